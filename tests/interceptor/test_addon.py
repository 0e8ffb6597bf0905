"""The addon's hooks on mitmproxy test flows, with a fake bus. The same behaviour is
checked through the real proxy in test_proxy.py; these cases reach the corners a
real proxy cannot easily be pushed into."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from mitmproxy import exceptions, http
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons, tflow

from services.common.contracts import Decision, Verdict, encode
from services.interceptor.addon import DECISION_HEADER, Interceptor
from services.interceptor.settings import InterceptorSettings

SEND = (
    "https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations/19%3Ax%40thread.v2/messages"
)


class FakeReply:
    def __init__(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers


class FakeBus:
    """Answers every request on its reply inbox with what ``answer`` returns for the
    decision id (a verdict without a record acknowledgement to wait for)."""

    is_connected = True
    is_closed = False
    max_payload = 1024 * 1024

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[bytes] = []
        self.inboxes: list[tuple[str, Any]] = []

    def new_inbox(self) -> str:
        return "_INBOX.fake"

    async def subscribe(self, subject: str, cb: Any) -> None:
        self.inboxes.append((subject.removesuffix("*"), cb))

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.asked.append(payload)
        decision_id = orjson.loads(payload)["id"]
        for prefix, cb in self.inboxes:
            if reply.startswith(prefix):
                await cb(FakeReply(reply, self.answer(decision_id)))


def allowing(decision_id: str, **fields: Any) -> bytes:
    return encode(Verdict(decision_id=decision_id, decision=Decision.ALLOW, **fields))


def addon_with(answer: Any = allowing, **settings: Any) -> Interceptor:
    addon = Interceptor(InterceptorSettings.load(env={}, **settings), "interceptor@test")
    addon.nc = FakeBus(answer)  # type: ignore[assignment]
    return addon


def flow_for(url: str, method: str = "POST", body: bytes = b'{"content":"hi"}') -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make(
        method, url, body, http.Headers(Authentication="skypetoken=x.y.z")
    )
    return flow


async def run(addon: Interceptor, flow: http.HTTPFlow) -> http.HTTPFlow:
    addon.requestheaders(flow)
    await addon.request(flow)
    return flow


async def test_an_allowed_request_is_recorded_in_the_flow_and_tagged_on_the_response() -> None:
    addon = addon_with(decision_header=True)
    flow = await run(addon, flow_for(SEND))
    flow.response = http.Response.make(201, b"{}")
    addon.response(flow)
    assert flow.metadata["tfw"]["decision"] == "allow"
    assert flow.response.headers[DECISION_HEADER] == flow.metadata["tfw"]["decision_id"]


async def test_allowed_responses_carry_no_decision_header_by_default() -> None:
    addon = addon_with()
    flow = await run(addon, flow_for(SEND))
    flow.response = http.Response.make(201, b"{}")
    addon.response(flow)
    assert DECISION_HEADER not in flow.response.headers


async def test_a_request_another_addon_answered_is_left_alone() -> None:
    addon = addon_with()
    flow = flow_for(SEND)
    flow.response = http.Response.make(204, b"")
    await addon.request(flow)
    assert flow.response.status_code == 204
    assert "tfw" not in flow.metadata
    assert addon.nc.asked == []  # type: ignore[union-attr]


async def test_a_controlled_request_is_never_streamed_upstream() -> None:
    addon = addon_with()
    flow = flow_for(SEND)
    flow.request.stream = True
    addon.requestheaders(flow)
    assert flow.request.stream is False


async def test_an_exception_while_failing_still_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    addon = addon_with(answer=lambda decision_id: b"{")

    def broken_fail(*args: object) -> None:
        raise RuntimeError("fail mode broke")

    monkeypatch.setattr(addon, "fail", broken_fail)
    flow = await run(addon, flow_for(SEND))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert b"fail closed" in (flow.response.content or b"")


async def test_an_exception_in_the_hook_blocks_a_request_it_already_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addon = addon_with(answer=lambda decision_id: allowing(decision_id, headers={"X-Tag": "1"}))
    original_apply = addon.apply

    def apply_then_crash(flow: http.HTTPFlow, verdict: Verdict) -> None:
        original_apply(flow, verdict)
        raise RuntimeError("after the headers were added")

    monkeypatch.setattr(addon, "apply", apply_then_crash)
    flow = await run(addon, flow_for(SEND))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert flow.metadata["tfw"]["failure"] == "internal"


async def test_without_a_bus_connection_the_fail_mode_applies() -> None:
    addon = addon_with()
    addon.nc = None
    flow = await run(addon, flow_for(SEND))
    assert flow.response is not None
    assert "unreachable" in orjson.loads(flow.response.content or b"{}")["message"]


async def test_fail_mode_allow_lets_the_request_pass_and_records_the_failure() -> None:
    addon = addon_with(fail_mode="allow")
    addon.nc = None
    flow = await run(addon, flow_for(SEND))
    assert flow.response is None
    assert flow.metadata["tfw"] == {
        "decision_id": flow.metadata["tfw"]["decision_id"],
        "decision": "allow",
        "failure": "nats_down",
        "reason": "the decision service is unreachable",
    }


async def test_reads_are_decided_when_configured() -> None:
    addon = addon_with(decide_reads=True)
    await run(addon, flow_for(SEND, method="GET", body=b""))
    assert len(addon.nc.asked) == 1  # type: ignore[union-attr]


async def test_reads_pass_without_asking_by_default() -> None:
    addon = addon_with()
    flow = await run(addon, flow_for(SEND, method="GET", body=b""))
    assert flow.response is None
    assert addon.nc.asked == []  # type: ignore[union-attr]


async def test_the_decision_packet_fits_nats_max_payload() -> None:
    addon = addon_with(body_cap_bytes=1024 * 1024)
    addon.nc.max_payload = 256 * 1024  # type: ignore[union-attr,misc]
    await run(addon, flow_for(SEND, body=b"z" * 600_000))
    (payload,) = addon.nc.asked  # type: ignore[union-attr]
    packet = orjson.loads(payload)
    assert len(payload) <= 256 * 1024
    assert packet["body_truncated"] is True
    assert packet["body_size"] == 600_000


async def test_x_forwarded_for_names_the_client_when_configured() -> None:
    addon = addon_with(x_forwarded_for=True)
    flow = await run(addon, flow_for(SEND))
    assert flow.request.headers["X-Forwarded-For"] == flow.client_conn.peername[0]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer forged"},
        {"Host": "evil.test"},
        {"X-Ok": "a\nb"},
        {"Bad Name": "1"},
    ],
)
async def test_a_verdict_cannot_set_routing_credential_or_unsafe_headers(
    headers: dict[str, str],
) -> None:
    addon = addon_with(answer=lambda decision_id: allowing(decision_id, headers=headers))
    flow = await run(addon, flow_for(SEND))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert flow.metadata["tfw"]["failure"] == "bad_verdict"


def test_stream_large_bodies_is_refused() -> None:
    addon = addon_with()
    with taddons.context(proxyserver.Proxyserver(), addon) as context:
        with pytest.raises(exceptions.OptionsError):
            context.configure(addon, stream_large_bodies="1m")


async def test_a_request_naming_a_tunnelled_host_in_its_headers_is_still_decided() -> None:
    addon = addon_with(answer=lambda decision_id: b"{")
    flow = flow_for(SEND)
    flow.request.headers["Host"] = "go.trouter.teams.microsoft.com"
    await run(addon, flow)
    assert len(addon.nc.asked) == 1  # type: ignore[union-attr]
    assert flow.response is not None
    assert flow.response.status_code == 403


def test_tls_is_decrypted_when_either_the_sni_or_the_connect_host_is_controlled() -> None:
    addon = addon_with()

    def hello(sni: str, connect_host: str) -> Any:
        data = SimpleNamespace(
            client_hello=SimpleNamespace(sni=sni),
            context=SimpleNamespace(server=SimpleNamespace(address=(connect_host, 443))),
            ignore_connection=False,
        )
        addon.tls_clienthello(data)  # type: ignore[arg-type]
        return data.ignore_connection

    assert hello("presence.teams.microsoft.com", "emea.ng.msg.teams.microsoft.com") is False
    assert hello("emea.ng.msg.teams.microsoft.com", "presence.teams.microsoft.com") is False
    assert hello("", "teams.cloud.microsoft") is False
    assert hello("presence.teams.microsoft.com", "presence.teams.microsoft.com") is True
    assert hello("login.microsoftonline.com", "login.microsoftonline.com") is True


@pytest.mark.parametrize(
    "authority",
    [
        "emea.ng.msg.teams.microsoft.com",
        "Teams.Microsoft.com:443",
        "[::1]:8080",
        "127.0.0.1",
        "xn--bcher-kva.example",
        "bücher.example",
        "bad host!",
        "a" * 300 + ".example",
        "",
    ],
)
def test_the_host_a_request_names_is_read_as_mitmproxy_reads_it(authority: str) -> None:
    from services.interceptor.addon import _pretty_host

    request = tflow.tflow().request
    request.host = "203.0.113.9"
    request.headers.pop("Host", None)
    if authority:
        request.headers["Host"] = authority
    for _ in range(2):  # the second read comes from what was kept
        assert _pretty_host(request) == request.pretty_host
