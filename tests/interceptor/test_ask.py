from __future__ import annotations

from types import SimpleNamespace

from mitmproxy import http
from mitmproxy.test import tflow

from services.interceptor.ask import ENVELOPE_BYTES, payload_cap, request_packet


def test_the_body_cap_shrinks_so_a_base64_body_fits_the_nats_payload() -> None:
    nats = SimpleNamespace(max_payload=1024 * 1024)
    assert payload_cap(256 * 1024, nats) == 256 * 1024  # type: ignore[arg-type]
    assert payload_cap(4 * 1024 * 1024, nats) == (1024 * 1024 - ENVELOPE_BYTES) * 3 // 4  # type: ignore[arg-type]
    assert payload_cap(256 * 1024, None) == 256 * 1024


def test_the_packet_carries_the_real_host_the_credentials_and_no_cookies() -> None:
    flow = tflow.tflow()
    flow.request = http.Request.make(
        "POST",
        "https://teams.cloud.microsoft.mcas.ms/api/chatsvc/emea/v1/users/ME/conversations/x/messages",
        b"0123456789",
        http.Headers(
            Authorization="Bearer a.b.c",
            Cookie="skypetoken_asm=secret",
        ),
    )
    flow.request.headers["x-ms-session-id"] = "s1"
    packet = request_packet(
        flow, "01DECISION", flow.request.pretty_host, flow.request.path, 4, "interceptor@test"
    )
    assert packet.host == "teams.cloud.microsoft"
    assert packet.path == "/api/chatsvc/emea/v1/users/ME/conversations/x/messages"
    assert packet.headers["authorization"] == "Bearer a.b.c"
    assert packet.headers["x-ms-session-id"] == "s1"
    assert "cookie" not in packet.headers
    assert (packet.body, packet.body_size, packet.body_truncated) == (b"0123", 10, True)
    assert packet.client_ip == flow.client_conn.peername[0]
