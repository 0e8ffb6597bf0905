"""The interceptor through the real proxy: mitmproxy, NATS, a recording stand-in for
Teams (reached with map_remote) and a stand-in decision service on the bus."""

from __future__ import annotations

import gzip
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import httpx
import orjson
import pytest

from services.common.contracts import Decision, InterceptedRequest
from services.interceptor.addon import Interceptor
from services.interceptor.proxy import build_master
from services.interceptor.settings import InterceptorSettings
from tests.interceptor.conftest import (
    Proxy,
    ProxyFactory,
    Reply,
    TlsServer,
    allow,
    h2_post,
    verdict,
)
from tests.support.tokens import bearer, skypetoken
from tests.support.walls import RULES

pytestmark = pytest.mark.e2e

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
ALICE = "a11ce000-0000-4000-8000-000000000001"
TIMEOUT_S = 0.5

FRONT_DOORS = {
    "legacy": "https://emea.ng.msg.teams.microsoft.com",
    "legacy-country": "https://fr.ng.msg.teams.microsoft.com",
    "teams.microsoft.com": "https://teams.microsoft.com/api/chatsvc/emea",
    "teams.cloud.microsoft": "https://teams.cloud.microsoft/api/chatsvc/emea",
    "consumer": "https://teams.live.com/api/chatsvc/consumer",
    "consumer-msgapi": "https://msgapi.teams.live.com",
    "mcas-legacy": "https://emea.ng.msg.teams.microsoft.com.mcas.ms",
    "mcas-cloud": "https://teams.cloud.microsoft.mcas.ms/api/chatsvc/emea",
}
CREDENTIAL_KINDS = ("skypetoken", "x-skypetoken", "bearer", "both", "none", "garbage-token")


@pytest.fixture(scope="module")
def scenario(shared_cases: Path) -> dict[str, dict[str, Any]]:
    lines = (shared_cases / "scenario.jsonl").read_text().splitlines()
    return {case["id"]: case for case in map(json.loads, filter(None, lines))}


@pytest.fixture(scope="module")
def proxy(proxy_factory: ProxyFactory) -> Proxy:
    return proxy_factory(
        {
            "TFW_DECIDE_TIMEOUT_S": str(TIMEOUT_S),
            "TFW_CONSUMER_HOSTS": "true",
            "TFW_X_FORWARDED_FOR": "true",
            "TFW_BODY_CAP_BYTES": str(64 * 1024),
            "TFW_FAIL_MODE_OVERRIDES": "typing=allow",
            "TFW_DECISION_HEADER": "true",
        }
    )


@pytest.fixture
def decider(proxy: Proxy) -> Iterator[Proxy]:
    """The module's proxy with its stand-in reset to allow everything."""
    proxy.decider.behaviour = allow
    proxy.decider.requests.clear()
    proxy.decider.observations.clear()
    yield proxy
    proxy.decider.behaviour = allow


def client(proxy: Proxy, trusted: str | None = None) -> httpx.Client:
    """A client through the proxy that trusts its CA, or only the CAs in ``trusted``."""
    context = ssl.create_default_context(cafile=trusted or str(proxy.ca))
    return httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", verify=context, timeout=10)


def credentials(kind: str) -> dict[str, str]:
    sky = skypetoken(ALICE, FIRM)
    bear = bearer(ALICE, FIRM, "alice@firm.example")
    return {
        "skypetoken": {"Authentication": f"skypetoken={sky}"},
        "x-skypetoken": {"X-Skypetoken": sky},
        "bearer": {"Authorization": f"Bearer {bear}"},
        "both": {"Authentication": f"skypetoken={sky}", "Authorization": f"Bearer {bear}"},
        "none": {},
        "garbage-token": {"Authentication": "skypetoken=not-a-token"},
    }[kind]


def send_path(scenario: dict[str, dict[str, Any]]) -> str:
    """The chat-service path of the scenario's first send, after its front door."""
    url = scenario["s01"]["url"]
    return url[url.index("/v1/") :]


def last_request(proxy: Proxy) -> InterceptedRequest:
    assert proxy.decider.requests, "the decision service was never asked"
    return proxy.decider.requests[-1]


@pytest.mark.parametrize("front_door", sorted(FRONT_DOORS))
@pytest.mark.parametrize("kind", CREDENTIAL_KINDS)
def test_every_front_door_and_credential_kind_is_decided_with_its_credentials(
    decider: Proxy, scenario: dict[str, dict[str, Any]], front_door: str, kind: str
) -> None:
    url = FRONT_DOORS[front_door] + send_path(scenario)
    sent = credentials(kind)
    before = len(decider.upstream.received)
    with client(decider) as http:
        response = http.post(url, json=scenario["s01"]["body"], headers=sent)
    asked = last_request(decider)
    assert response.status_code == 201
    assert response.headers["x-teamsfirewall-decision"] == asked.id
    assert len(decider.upstream.received) == before + 1
    assert asked.host == httpx.URL(url).host.removesuffix(".mcas.ms")
    assert asked.path == httpx.URL(url).raw_path.decode()
    assert asked.method == "POST"
    forwarded = {k: v for k, v in asked.headers.items() if k in {h.lower() for h in sent}}
    assert forwarded == {name.lower(): value for name, value in sent.items()}
    assert orjson.loads(asked.body) == scenario["s01"]["body"]


def test_a_block_answers_with_a_teams_shaped_error_and_never_reaches_teams(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    decider.decider.behaviour = verdict(
        Decision.BLOCK, ("Research may not message Trading",), status=403
    )
    before = len(decider.upstream.received)
    with client(decider) as http:
        response = http.post(
            scenario["s01"]["url"], json=scenario["s01"]["body"], headers=credentials("skypetoken")
        )
    body = orjson.loads(response.content)
    assert response.status_code == 403
    assert "Research may not message Trading" in body["message"]
    assert body["decisionId"] == last_request(decider).id
    assert response.headers["x-teamsfirewall-decision"] == body["decisionId"]
    assert len(decider.upstream.received) == before


def test_a_block_status_chosen_by_the_rules_is_kept(decider: Proxy) -> None:
    decider.decider.behaviour = verdict(Decision.BLOCK, ("Quiet hours",), status=451)
    with client(decider) as http:
        response = http.put(
            "https://teams.cloud.microsoft/api/chatsvc/emea/v1/threads/19%3Aabc%40thread.v2"
            "/members/8%3Aorgid%3Ab0b",
            json={"role": "User"},
            headers=credentials("bearer"),
        )
    assert response.status_code == 451
    assert "Quiet hours" in orjson.loads(response.content)["message"]


def test_an_allowed_request_carries_the_verdict_headers_and_the_client_address(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    decider.decider.behaviour = verdict(
        Decision.ALLOW, ("Tag meeting sends",), headers={"X-Teams-Message-Type": "MEETINGCHAT"}
    )
    with client(decider) as http:
        response = http.post(
            scenario["s01"]["url"], json={"content": "hi"}, headers=credentials("skypetoken")
        )
    received = decider.upstream.received[-1]
    assert response.status_code == 201
    assert received.headers["x-teams-message-type"] == "MEETINGCHAT"
    assert received.headers["x-forwarded-for"] == "127.0.0.1"


def test_an_http2_body_without_a_length_is_decided_whole_and_reaches_teams_whole(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    payload = b'{"content":"' + b"x" * (300 * 1024) + b'"}'
    chunks = [payload[start : start + 16 * 1024] for start in range(0, len(payload), 16 * 1024)]
    answer = h2_post(
        decider.port, decider.ca, scenario["s01"]["url"], credentials("bearer"), chunks
    )
    asked = last_request(decider)
    assert answer.status == 201
    assert answer.headers["x-teamsfirewall-decision"] == asked.id
    assert asked.http_version == "HTTP/2.0"
    assert asked.body_truncated
    assert asked.body_size == len(payload)
    assert asked.body == payload[: 64 * 1024]
    assert decider.upstream.received[-1].body == payload


def test_a_body_over_the_cap_reaches_teams_whole_and_the_event_says_it_was_cut(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    payload = b"y" * (200 * 1024)
    with client(decider) as http:
        response = http.post(
            scenario["s01"]["url"], content=payload, headers=credentials("skypetoken")
        )
    asked = last_request(decider)
    assert response.status_code == 201
    assert (asked.body_truncated, asked.body_size, len(asked.body)) == (True, len(payload), 65536)
    assert decider.upstream.received[-1].body == payload


def test_reads_pass_without_a_round_trip(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    with client(decider) as http:
        response = http.get(scenario["s20"]["url"], headers=credentials("skypetoken"))
    assert response.status_code == 201
    assert "x-teamsfirewall-decision" not in response.headers
    assert decider.decider.requests == []


def test_the_external_user_search_is_always_decided(decider: Proxy) -> None:
    decider.decider.behaviour = verdict(Decision.BLOCK, ("No external lookups",), status=403)
    url = "https://teams.microsoft.com/api/mt/part/emea-02/beta/users/x%40partner.example/externalsearchv3?includeTFLUsers=true"
    with client(decider) as http:
        response = http.get(url, headers=credentials("bearer"))
    assert response.status_code == 403
    assert last_request(decider).method == "GET"


def test_a_chat_service_path_on_an_unknown_teams_host_is_decided(decider: Proxy) -> None:
    url = "https://next.teams.microsoft.com/v1/users/ME/conversations/19%3Aabc%40thread.v2/messages"
    unknown = decider.metric("tfw_interceptor_unknown_teams_host_requests_total")
    with client(decider) as http:
        response = http.post(url, json={"content": "hi"}, headers=credentials("bearer"))
    assert response.status_code == 201
    assert last_request(decider).host == "next.teams.microsoft.com"
    assert decider.metric("tfw_interceptor_unknown_teams_host_requests_total") == unknown + 1


def _garbage(request: InterceptedRequest) -> Reply:
    return Reply(b"this is not a verdict")


def _someone_else(request: InterceptedRequest) -> Reply:
    return verdict(Decision.ALLOW)(request.model_copy(update={"id": "01HOTHERREQUEST"}))


def _error(request: InterceptedRequest) -> Reply:
    return Reply(b"", {"Tfw-Error-Code": "internal", "Tfw-Error": "resolver failed"})


def _slow(request: InterceptedRequest) -> Reply:
    return Reply(allow(request).data, delay_s=TIMEOUT_S * 3)


def _bad_header_after_a_good_one(request: InterceptedRequest) -> Reply:
    # The first header is set on the request before the second one fails.
    return verdict(Decision.ALLOW, headers={"X-Good": "1", "X-Bad": "a\r\nInjected: 1"})(request)


@pytest.mark.parametrize(
    ("behaviour", "cause", "says"),
    [
        (_slow, "timeout", "no verdict within the timeout"),
        (_garbage, "bad_verdict", "unreadable verdict"),
        (_someone_else, "bad_verdict", "verdict for another request"),
        (_error, "remote_error", "the decision service reported internal"),
        (_bad_header_after_a_good_one, "bad_verdict", "header"),
    ],
    ids=["timeout", "malformed", "mismatched", "remote-error", "hook-error-after-change"],
)
def test_every_failure_ends_in_the_fail_mode(
    decider: Proxy, scenario: dict[str, dict[str, Any]], behaviour: Any, cause: str, says: str
) -> None:
    decider.decider.behaviour = behaviour
    failures = decider.metric("tfw_interceptor_failures_total", cause=cause, mode="block")
    before = len(decider.upstream.received)
    with client(decider) as http:
        response = http.post(
            scenario["s01"]["url"], json={"content": "hi"}, headers=credentials("skypetoken")
        )
    body = orjson.loads(response.content)
    assert response.status_code == 403
    assert says in body["message"]
    assert body["message"].endswith("fail closed")
    assert len(decider.upstream.received) == before
    assert decider.metric("tfw_interceptor_failures_total", cause=cause, mode="block") == (
        failures + 1
    )


def test_a_typing_indicator_follows_its_own_fail_mode(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    decider.decider.behaviour = _slow
    typing = {"messagetype": "Control/Typing", "contenttype": "Application/Message", "content": ""}
    with client(decider) as http:
        passed = http.post(scenario["s01"]["url"], json=typing, headers=credentials("skypetoken"))
        blocked = http.post(
            scenario["s01"]["url"],
            json={"messagetype": "Text", "content": "x"},
            headers=credentials("skypetoken"),
        )
    assert passed.status_code == 201
    assert blocked.status_code == 403


def test_with_no_decision_service_on_the_bus_requests_are_blocked(
    proxy_factory: ProxyFactory, scenario: dict[str, dict[str, Any]]
) -> None:
    lonely = proxy_factory({"TFW_SUBJECT_PREFIX": "tnobody"})
    with client(lonely) as http:
        response = http.post(
            scenario["s01"]["url"], json={"content": "hi"}, headers=credentials("skypetoken")
        )
    assert response.status_code == 403
    assert "no decision service is running" in orjson.loads(response.content)["message"]
    assert lonely.upstream.received == []


def test_with_nats_down_requests_are_blocked(
    proxy_factory: ProxyFactory, scenario: dict[str, dict[str, Any]]
) -> None:
    cut_off = proxy_factory({}, own_nats=True)
    cut_off.stack.stop_process(cut_off.stack.find("nats"))
    with client(cut_off) as http:
        response = http.post(
            scenario["s01"]["url"], json={"content": "hi"}, headers=credentials("skypetoken")
        )
    assert response.status_code == 403
    assert "unreachable" in orjson.loads(response.content)["message"]
    assert cut_off.metric("tfw_interceptor_failures_total", cause="nats_down", mode="block") == 1
    assert cut_off.upstream.received == []


def test_a_client_that_does_not_trust_the_ca_is_counted_and_nothing_passes(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    failures = decider.metric("tfw_interceptor_tls_client_failures_total")
    before = len(decider.upstream.received)
    with client(decider, trusted=certifi.where()) as http:  # public CAs, not the proxy's
        with pytest.raises(httpx.ConnectError):
            http.post(scenario["s01"]["url"], json={"content": "hi"})
    assert decider.metric("tfw_interceptor_tls_client_failures_total") == failures + 1
    assert len(decider.upstream.received) == before


def test_a_non_teams_host_is_refused_by_the_open_proxy_guard(decider: Proxy) -> None:
    before = len(decider.upstream.received)
    with client(decider) as http:
        response = http.get("http://intranet.example.test/")
        with pytest.raises(httpx.ProxyError):
            http.get("https://intranet.example.test/")
    assert response.status_code == 403
    assert "only forwards Microsoft Teams traffic" in response.text
    assert len(decider.upstream.received) == before
    assert decider.decider.requests == []


AUTHZ_ANSWER = b'{"tokens": {"skypeToken": "eyJ.sky.token", "expiresIn": 86399}, "region": "emea"}'
MEMBERS_ANSWER = b'{"members": [{"id": "8:orgid:b0b", "role": "Admin"}]}'
PROFILES_ANSWER = b'{"value": [{"mri": "8:orgid:b0b", "email": "bob@firm.example"}]}'


@pytest.mark.parametrize(
    "url",
    [
        "https://teams.microsoft.com/api/authsvc/v1.0/authz",
        "https://authsvc.teams.microsoft.com/v1.0/authz",
        "https://teams.cloud.microsoft/api/authsvc/v1.0/authz",
    ],
)
def test_the_token_exchange_is_observed_and_the_client_gets_its_answer_untouched(
    decider: Proxy, url: str
) -> None:
    decider.upstream.answers["/authz"] = AUTHZ_ANSWER
    # A token of its own per case: the same token is published only once in a while.
    token = bearer(ALICE, FIRM, f"alice@{httpx.URL(url).host}", "https://api.spaces.skype.com")
    sent = {"Authorization": f"Bearer {token}", "x-ms-session-id": "5e55-10n"}
    with client(decider) as http:
        response = http.post(url, headers=sent)
    observed = decider.decider.wait_for_observations(2)
    by_kind = {observation.kind: observation for observation in observed}
    assert response.status_code == 200
    assert response.content == AUTHZ_ANSWER
    assert "x-teamsfirewall-decision" not in response.headers
    assert decider.decider.requests == []
    assert sorted(by_kind) == ["lookup", "token"]
    assert by_kind["token"].request_headers["authorization"] == f"Bearer {token}"
    assert by_kind["token"].request_headers["x-ms-session-id"] == "5e55-10n"
    assert by_kind["lookup"].response_body == AUTHZ_ANSWER
    assert by_kind["lookup"].status == 200
    assert (by_kind["lookup"].host, by_kind["lookup"].path) == (
        httpx.URL(url).host,
        httpx.URL(url).path,
    )


def test_thread_lookups_the_client_makes_are_observed_without_a_decision(decider: Proxy) -> None:
    decider.upstream.answers["/members"] = MEMBERS_ANSWER
    url = (
        "https://emea.ng.msg.teams.microsoft.com/v1/threads/19%3Aabc%40thread.v2/members"
        "?view=msnp24Equivalent&pageSize=100"
    )
    with client(decider) as http:
        response = http.get(url, headers=credentials("skypetoken"))
    (observed,) = decider.decider.wait_for_observations(1)
    assert response.content == MEMBERS_ANSWER
    assert decider.decider.requests == []
    assert observed.kind == "lookup"
    assert observed.path == httpx.URL(url).raw_path.decode()
    assert observed.response_body == MEMBERS_ANSWER
    assert "authentication" in observed.request_headers


def test_profile_lookups_are_observed_and_a_token_is_published_once(decider: Proxy) -> None:
    decider.upstream.answers["/fetchShortProfile"] = PROFILES_ANSWER
    url = (
        "https://teams.cloud.microsoft/api/mt/part/emea-02/beta/users/fetchShortProfile"
        "?isMailAddress=false&enableGuest=true"
    )
    sent = {"Authorization": f"Bearer {bearer(ALICE, FIRM, 'alice@profiles.example')}"}
    with client(decider) as http:
        first = http.post(url, json=["8:orgid:b0b"], headers=sent)
        second = http.post(url, json=["8:orgid:b0b"], headers=sent)
    observed = decider.decider.wait_for_observations(3)
    kinds = sorted(observation.kind for observation in observed)
    assert first.content == second.content == PROFILES_ANSWER
    assert decider.upstream.received[-1].body == b'["8:orgid:b0b"]'
    assert kinds == ["lookup", "lookup", "token"]
    assert all(o.response_body == PROFILES_ANSWER for o in observed if o.kind == "lookup")


def test_a_non_teams_host_is_tunnelled_untouched_when_the_proxy_serves_everyone(
    proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    open_proxy = proxy_factory({"TFW_ALLOW_ONLY_TEAMS": "false"})
    with (
        TlsServer(tmp_path) as server,
        httpx.Client(
            proxy=f"http://127.0.0.1:{open_proxy.port}", verify=server.context(), timeout=10
        ) as http,
    ):
        tunnelled = open_proxy.metric(
            "tfw_interceptor_tls_connections_total", treatment="tunnelled"
        )
        response = http.get(f"https://127.0.0.1:{server.port}/hello")
    assert response.text == "hello from the real server"
    assert server.paths == ["/hello"]
    assert open_proxy.decider.requests == []
    assert (
        open_proxy.metric("tfw_interceptor_tls_connections_total", treatment="tunnelled")
        == tunnelled + 1
    )


@pytest.fixture(scope="module")
def pipeline(proxy_factory: ProxyFactory, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    """An interceptor in front of the real resolver and decider (no stand-in answers:
    its subscription only records, in another queue group)."""
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    rules.write_text(RULES)
    real = proxy_factory({}, stand_in=False)
    env = {"TFW_SUBJECT_PREFIX": real.decider.prefix}
    real.stack.start_service("resolver", env)
    real.stack.start_service("decider", {**env, "TFW_RULES_FILE": str(rules)})
    return real


@pytest.mark.parametrize("front_door", ["legacy", "teams.microsoft.com", "teams.cloud.microsoft"])
@pytest.mark.parametrize("kind", CREDENTIAL_KINDS)
def test_the_real_pipeline_blocks_missing_or_unreadable_credentials_with_a_clear_reason(
    pipeline: Proxy, scenario: dict[str, dict[str, Any]], front_door: str, kind: str
) -> None:
    url = FRONT_DOORS[front_door] + send_path(scenario)
    before = len(pipeline.upstream.received)
    with client(pipeline) as http:
        response = http.post(url, json=scenario["s01"]["body"], headers=credentials(kind))
    if kind in ("none", "garbage-token"):
        body = orjson.loads(response.content)
        assert response.status_code == 403
        assert "the actor cannot be identified" in body["message"]
        assert "fail closed" in body["message"]
        assert body["decisionId"] == response.headers["x-teamsfirewall-decision"]
        assert len(pipeline.upstream.received) == before
    else:
        assert response.status_code == 201, response.text
        assert len(pipeline.upstream.received) == before + 1


def test_a_chat_request_cannot_dodge_its_decision_with_another_host_header(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    decider.decider.behaviour = verdict(Decision.BLOCK, ("Research may not message Trading",))
    before = len(decider.upstream.received)
    with client(decider) as http:
        response = http.post(
            scenario["s01"]["url"],
            json=scenario["s01"]["body"],
            headers={**credentials("skypetoken"), "Host": "go.trouter.teams.microsoft.com"},
        )
    assert response.status_code == 403
    assert last_request(decider).host == "emea.ng.msg.teams.microsoft.com"
    assert len(decider.upstream.received) == before


def test_proxy_authentication_is_required_when_configured(
    proxy_factory: ProxyFactory, scenario: dict[str, dict[str, Any]]
) -> None:
    guarded = proxy_factory({"TFW_PROXYAUTH": "teams:s3cret"})
    context = ssl.create_default_context(cafile=str(guarded.ca))
    with httpx.Client(proxy=f"http://127.0.0.1:{guarded.port}", verify=context) as http:
        with pytest.raises(httpx.ProxyError) as refused:
            http.post(scenario["s01"]["url"], json={"content": "hi"})
    assert "407" in str(refused.value)
    authorised = f"http://teams:s3cret@127.0.0.1:{guarded.port}"
    with httpx.Client(proxy=authorised, verify=context) as http:
        response = http.post(
            scenario["s01"]["url"], json={"content": "hi"}, headers=credentials("skypetoken")
        )
    assert response.status_code == 201
    assert len(guarded.decider.requests) == 1


async def test_the_lean_master_has_its_ca_before_it_listens_and_only_the_addons_it_needs(
    tmp_path: Path,
) -> None:
    settings = InterceptorSettings.load(env={"TFW_CONFDIR": str(tmp_path / "ca")})
    master = build_master(settings, Interceptor(settings, "interceptor@test"))
    names = [type(addon).__name__ for addon in master.addons.chain]
    assert (tmp_path / "ca" / "mitmproxy-ca-cert.pem").is_file()
    assert names == [
        "Core",
        "Block",
        "ProxyAuth",
        "TlsConfig",
        "Proxyserver",
        "NextLayer",
        "ErrorCheck",
        "Interceptor",
        "MapRemote",
    ]


def test_a_compressed_body_is_decided_decoded_and_reaches_teams_as_sent(
    decider: Proxy, scenario: dict[str, dict[str, Any]]
) -> None:
    message = orjson.dumps(scenario["s01"]["body"])
    squeezed = gzip.compress(message)
    with client(decider) as http:
        response = http.post(
            scenario["s01"]["url"],
            content=squeezed,
            headers={**credentials("skypetoken"), "Content-Encoding": "gzip"},
        )
    asked = last_request(decider)
    assert response.status_code == 201
    assert asked.body == message
    assert "content-encoding" not in asked.headers
    assert decider.upstream.received[-1].body == squeezed
