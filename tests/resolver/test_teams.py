"""The Teams lookup client: redirect, retries after 429, typed failures, timeouts."""

from __future__ import annotations

import httpx
import pytest

from services.resolver.teams import (
    LookupFailed,
    NotFound,
    TeamsClient,
    TokenRejected,
    teams_url,
)

URL = "https://emea.ng.msg.teams.microsoft.com/v1/threads/19%3Ax%40thread.v2?view=msnp24Equivalent"


def test_without_a_redirect_the_real_teams_url_is_used() -> None:
    assert teams_url(URL, None) == URL


def test_a_redirect_sends_every_host_to_the_simulator_under_its_name() -> None:
    assert teams_url(URL, "http://127.0.0.1:8123") == (
        "http://127.0.0.1:8123/_host/emea.ng.msg.teams.microsoft.com"
        "/v1/threads/19%3Ax%40thread.v2?view=msnp24Equivalent"
    )
    already = "http://127.0.0.1:8123/_host/teams.microsoft.com/api/mt/emea/beta/x"
    assert teams_url(already, "http://127.0.0.1:8123/") == already


class Script:
    """A transport answering from a list of (status, headers, body), recording requests."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, headers, body = self.answers.pop(0)
        return httpx.Response(status, headers=headers, content=body)


def _client(script: Script, **options: object) -> TeamsClient:
    return TeamsClient(
        redirect="http://127.0.0.1:9", transport=httpx.MockTransport(script), **options
    )  # type: ignore[arg-type]


async def test_a_429_is_retried_after_its_retry_after() -> None:
    script = Script((429, {"Retry-After": "0"}, b""), (200, {}, b'{"ok": true}'))
    client = _client(script)
    assert await client.get("thread", URL, {}) == {"ok": True}
    assert client.calls["thread"] == 2
    assert str(script.requests[0].url).startswith("http://127.0.0.1:9/_host/emea.ng.msg")
    await client.close()


async def test_a_retry_after_beyond_the_ceiling_fails_the_lookup_at_once() -> None:
    script = Script((429, {"Retry-After": "120"}, b""))
    client = _client(script, max_retry_after_s=5.0)
    with pytest.raises(LookupFailed, match="429"):
        await client.get("thread", URL, {})
    assert client.calls["thread"] == 1
    await client.close()


async def test_a_lasting_rate_limit_gives_up_after_the_retries() -> None:
    script = Script(*[(429, {"Retry-After": "0"}, b"")] * 3)
    client = _client(script, max_retries=2)
    with pytest.raises(LookupFailed, match="429"):
        await client.get("members", URL, {})
    assert client.calls["members"] == 3
    await client.close()


@pytest.mark.parametrize(
    ("status", "error"), [(401, TokenRejected), (404, NotFound), (403, LookupFailed)]
)
async def test_refusals_are_typed_failures(status: int, error: type[Exception]) -> None:
    client = _client(Script((status, {}, b'{"errorCode": 1}')))
    with pytest.raises(error):
        await client.post("profiles", URL, {}, ["8:orgid:x"])
    await client.close()


async def test_an_answer_that_is_not_json_is_a_failure_with_a_reason() -> None:
    client = _client(Script((200, {}, b"<html>")))
    with pytest.raises(LookupFailed, match="not JSON"):
        await client.get("thread", URL, {})
    await client.close()


async def test_a_silent_server_is_a_timeout_failure() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = TeamsClient(transport=httpx.MockTransport(hang))
    with pytest.raises(LookupFailed, match="in time"):
        await client.get("thread", URL, {})
    await client.close()


async def test_an_unreachable_teams_is_a_failure_naming_no_address() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = TeamsClient(transport=httpx.MockTransport(refuse))
    with pytest.raises(LookupFailed) as failure:
        await client.get("thread", URL, {})
    assert (
        "unreachable" in failure.value.reason and "teams.microsoft.com" not in failure.value.reason
    )
    await client.close()


async def test_a_disabled_client_sends_nothing_and_says_why() -> None:
    script = Script((200, {}, b"{}"))
    client = TeamsClient(transport=httpx.MockTransport(script), enabled=False)
    with pytest.raises(LookupFailed, match="lookups are off"):
        await client.get("thread", URL, {})
    assert script.requests == []
    await client.close()
