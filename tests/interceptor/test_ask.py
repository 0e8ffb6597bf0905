from __future__ import annotations

import gzip
import zlib
from types import SimpleNamespace

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from services.common.contracts import InterceptedRequest, decode, encode, new_decision_id
from services.interceptor.ask import (
    ENVELOPE_BYTES,
    FailMode,
    forwarded_headers,
    payload_cap,
    read_headers,
    readable_body,
    request_packet,
)


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
        flow, new_decision_id(), flow.request.pretty_host, flow.request.path, 4, "interceptor@test"
    )
    assert packet.host == "teams.cloud.microsoft"
    assert packet.path == "/api/chatsvc/emea/v1/users/ME/conversations/x/messages"
    assert packet.headers["authorization"] == "Bearer a.b.c"
    assert packet.headers["x-ms-session-id"] == "s1"
    assert "cookie" not in packet.headers
    assert (packet.body, packet.body_size, packet.body_truncated) == (b"0123", 10, True)
    assert packet.client_ip == flow.client_conn.peername[0]
    # Assembled without validation: what validation would have made, every field set.
    assert InterceptedRequest.model_validate(packet.model_dump()) == packet
    assert set(vars(packet)) == set(InterceptedRequest.model_fields)
    assert decode(InterceptedRequest, encode(packet)) == packet


def test_a_compressed_body_is_sent_decoded_and_its_framing_headers_stay_behind() -> None:
    """The headers read once on the way (``read_headers``) give the packet the same
    body and headers as reading the request afresh."""
    message = b'{"content": "hello"}'
    flow = tflow.tflow()
    flow.request = _request(gzip.compress(message), "GZIP")
    flow.request.headers["Authorization"] = "Bearer a.b.c"
    seen = read_headers(flow.request.headers)
    assert seen["content-encoding"] == "GZIP"
    for given in (seen, None):
        packet = request_packet(flow, new_decision_id(), "h", "/p", 1024, "i@test", given)
        assert (packet.body, packet.body_truncated) == (message, False)
        assert packet.headers == {"authorization": "Bearer a.b.c"}


def _request(body: bytes, encoding: str) -> http.Request:
    """A request whose bytes on the wire are ``body``, sent as ``encoding``."""
    request = http.Request.make(
        "POST", "https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations/x/messages"
    )
    request.headers["content-encoding"] = encoding
    request.raw_content = body
    return request


def test_a_compressed_body_is_decoded_for_the_rules() -> None:
    message = b'{"content":"<p>the deal closes friday</p>","messagetype":"RichText/Html"}'
    assert readable_body(_request(gzip.compress(message), "gzip"), 1024) == (message, False)
    raw_deflate = zlib.compressobj(wbits=-15)
    squeezed = raw_deflate.compress(message) + raw_deflate.flush()
    assert readable_body(_request(squeezed, "deflate"), 1024) == (message, False)
    assert readable_body(_request(zlib.compress(message), "deflate"), 1024) == (message, False)


def test_a_compression_bomb_is_cut_at_the_cap_not_expanded() -> None:
    bomb = gzip.compress(b"A" * 50_000_000)
    body, truncated = readable_body(_request(bomb, "gzip"), 4096)
    assert (len(body), truncated) == (4096, True)


@pytest.mark.parametrize(("body", "encoding"), [(b"\x1b\x00garbage", "br"), (b"not gzip", "gzip")])
def test_a_body_the_rules_cannot_read_ends_in_the_fail_mode(body: bytes, encoding: str) -> None:
    with pytest.raises(FailMode) as failure:
        readable_body(_request(body, encoding), 4096)
    assert failure.value.cause == "unreadable_body"


def test_forwarded_headers_are_those_mitmproxy_would_show_for_the_selected_names() -> None:
    headers = http.Headers(
        [
            (b"Authorization", b"Bearer a.b.c"),
            (b"Cookie", b"skypetoken_asm=secret"),
            (b"X-MS-Client-Version", b"1415/26010400925"),
            (b"authorization", b"Bearer d.e.f"),
            (b"User-Agent", b"Teams \xc3\xa9"),
        ]
    )
    expected = {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() in ("authorization", "x-ms-client-version", "user-agent")
    }
    assert forwarded_headers(read_headers(headers)) == expected
    assert forwarded_headers(read_headers(headers))["authorization"] == "Bearer a.b.c, Bearer d.e.f"
    assert "cookie" not in forwarded_headers(read_headers(headers))


def test_header_names_are_matched_as_mitmproxy_matches_them() -> None:
    """ASCII case folding only: a name with a Kelvin sign is not X-Skypetoken, for
    mitmproxy nor for the firewall."""
    headers = http.Headers(
        [("X-SKYPETO\u212aEN".encode(), b"a.b.c"), (b"X-MS-Session-Id", b"s1")]
    )
    assert "x-skypetoken" not in headers
    assert read_headers(headers) == {"x-ms-session-id": "s1"}
