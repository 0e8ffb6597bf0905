from __future__ import annotations

import pytest

from services.interceptor.scope import (
    HostKind,
    _routed,
    action_class,
    bare_host,
    host_kind,
    is_teams_host,
    route,
    should_decrypt,
)

CONV = "19%3Aabc%40thread.v2"


@pytest.mark.parametrize(
    ("given", "bare"),
    [
        ("teams.microsoft.com", "teams.microsoft.com"),
        ("Teams.Microsoft.COM:443", "teams.microsoft.com"),
        ("teams.cloud.microsoft.", "teams.cloud.microsoft"),
        ("teams.microsoft.com.mcas.ms", "teams.microsoft.com"),
        ("emea.ng.msg.teams.microsoft.com.mcas.ms:443", "emea.ng.msg.teams.microsoft.com"),
        ("teams.microsoft.com.eu2.mcas.ms", "teams.microsoft.com"),
        ("teams.microsoft.com.us3.cas.ms", "teams.microsoft.com"),
        ("10.1.2.3:8080", "10.1.2.3"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_hosts_are_compared_without_port_case_dot_or_cloud_apps_suffix(
    given: str, bare: str
) -> None:
    assert bare_host(given) == bare


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("emea.ng.msg.teams.microsoft.com", HostKind.CHAT_SERVICE),
        ("amer.ng.msg.teams.microsoft.com:443", HostKind.CHAT_SERVICE),
        ("fr.ng.msg.teams.microsoft.com", HostKind.CHAT_SERVICE),
        ("apac.msg.teams.microsoft.com", HostKind.CHAT_SERVICE),
        ("teams.microsoft.com", HostKind.FRONT_DOOR),
        ("teams.cloud.microsoft:443", HostKind.FRONT_DOOR),
        ("teams.cloud.microsoft.mcas.ms", HostKind.FRONT_DOOR),
        ("emea.ng.msg.teams.microsoft.com.mcas.ms", HostKind.CHAT_SERVICE),
        ("authsvc.teams.microsoft.com", HostKind.TOKEN_EXCHANGE),
        ("go.trouter.teams.microsoft.com", HostKind.TEAMS_TUNNELLED),
        ("go-eu.trouter.teams.microsoft.com", HostKind.TEAMS_TUNNELLED),
        ("presence.teams.microsoft.com", HostKind.TEAMS_TUNNELLED),
        ("emea-prod.asyncgw.teams.microsoft.com", HostKind.TEAMS_TUNNELLED),
        ("api.flightproxy.teams.microsoft.com", HostKind.TEAMS_TUNNELLED),
        ("statics.teams.cdn.office.net", HostKind.TEAMS_TUNNELLED),
        ("api.asm.skype.com", HostKind.TEAMS_TUNNELLED),
        ("teams.live.com", HostKind.TEAMS_TUNNELLED),
        ("msgapi.teams.live.com", HostKind.TEAMS_TUNNELLED),
        ("next.teams.microsoft.com", HostKind.TEAMS_UNKNOWN),
        ("teams.microsoft.us", HostKind.TEAMS_UNKNOWN),
        ("login.microsoftonline.com", HostKind.FOREIGN),
        ("teams.microsoft.com.evil.test", HostKind.FOREIGN),
        ("evilteams.microsoft.com", HostKind.FOREIGN),
        ("msg.teams.microsoft.com.attacker.example", HostKind.FOREIGN),
        ("teams.microsoft.com.mcas.ms.evil.test", HostKind.FOREIGN),
        ("52.112.0.1", HostKind.FOREIGN),
        ("52.112.0.1:443", HostKind.FOREIGN),
        ("[2603:1063::1]:443", HostKind.FOREIGN),
        ("", HostKind.FOREIGN),
    ],
)
def test_hosts_are_sorted_by_family(host: str, kind: HostKind) -> None:
    assert host_kind(host) is kind


def test_consumer_hosts_are_controlled_only_when_configured() -> None:
    assert host_kind("teams.live.com", consumer=True) is HostKind.FRONT_DOOR
    assert host_kind("msgapi.teams.live.com", consumer=True) is HostKind.CHAT_SERVICE
    assert not should_decrypt("teams.live.com")
    assert should_decrypt("teams.live.com", consumer=True)


@pytest.mark.parametrize(
    ("host", "decrypted"),
    [
        ("teams.microsoft.com", True),
        ("emea.ng.msg.teams.microsoft.com:443", True),
        ("authsvc.teams.microsoft.com", True),
        ("next.teams.microsoft.com", True),
        ("go.trouter.teams.microsoft.com", False),
        ("login.microsoftonline.com", False),
        ("127.0.0.1", False),
    ],
)
def test_only_controlled_and_unknown_teams_hosts_are_decrypted(host: str, decrypted: bool) -> None:
    assert should_decrypt(host) is decrypted


def test_the_open_proxy_guard_knows_every_teams_host_and_nothing_else() -> None:
    assert is_teams_host("go.trouter.teams.microsoft.com")
    assert is_teams_host("teams.live.com")
    assert not is_teams_host("example.com")
    assert not is_teams_host("127.0.0.1")


@pytest.mark.parametrize(
    ("method", "host", "path"),
    [
        ("POST", "emea.ng.msg.teams.microsoft.com", f"/v1/users/ME/conversations/{CONV}/messages"),
        (
            "POST",
            "teams.microsoft.com",
            f"/api/chatsvc/emea/v1/users/ME/conversations/{CONV}/messages",
        ),
        (
            "PUT",
            "teams.cloud.microsoft",
            f"/api/chatsvc/jp/v1/users/ME/conversations/{CONV}/messages/1",
        ),
        (
            "DELETE",
            "teams.cloud.microsoft.mcas.ms",
            f"/api/chatsvc/emea/v1/threads/{CONV}/members/8:orgid:x",
        ),
        ("POST", "emea.ng.msg.teams.microsoft.com", "/v1/threads"),
        (
            "PUT",
            "teams.microsoft.com",
            f"/API/ChatSvc/emea/v1/threads/{CONV}/properties?name=topic",
        ),
        ("POST", "teams.microsoft.com", "/api/chatsvc/emea/v2/users/ME/conversations/x/messages"),
        ("POST", "next.teams.microsoft.com", f"/v1/users/ME/conversations/{CONV}/messages"),
        (
            "GET",
            "teams.microsoft.com",
            "/api/mt/part/emea-02/beta/users/a%40b.example/externalsearchv3",
        ),
    ],
)
def test_chat_service_writes_and_the_external_search_are_decided(
    method: str, host: str, path: str
) -> None:
    assert route(method, host, path).decide


def test_consumer_chat_service_is_decided_only_when_configured() -> None:
    path = f"/api/chatsvc/consumer/v1/users/ME/conversations/{CONV}/messages"
    assert route("POST", "teams.live.com", path, consumer=True).decide
    assert not route("POST", "teams.live.com", path).decide
    assert route(
        "POST", "msgapi.teams.live.com", "/v1/users/ME/conversations/x/messages", True
    ).decide


@pytest.mark.parametrize(
    ("method", "host", "path"),
    [
        ("GET", "emea.ng.msg.teams.microsoft.com", f"/v1/users/ME/conversations/{CONV}/messages"),
        (
            "OPTIONS",
            "teams.microsoft.com",
            f"/api/chatsvc/emea/v1/users/ME/conversations/{CONV}/messages",
        ),
        ("GET", "teams.microsoft.com", "/_"),
        ("POST", "teams.microsoft.com", "/api/csa/emea/api/v1/teams/users/me"),
        ("POST", "teams.microsoft.com", "/api/mt/emea/beta/users/fetchShortProfile"),
        ("GET", "next.teams.microsoft.com", "/config/v1/settings"),
        ("POST", "go.trouter.teams.microsoft.com", "/v4/c"),
        ("POST", "example.com", "/v1/users/ME/conversations/x/messages"),
    ],
)
def test_reads_and_everything_outside_the_chat_service_pass(
    method: str, host: str, path: str
) -> None:
    assert not route(method, host, path).decide


def test_reads_are_decided_when_configured() -> None:
    path = f"/v1/users/ME/conversations/{CONV}/messages"
    assert route("GET", "emea.ng.msg.teams.microsoft.com", path, decide_reads=True).decide
    assert not route("OPTIONS", "emea.ng.msg.teams.microsoft.com", path, decide_reads=True).decide


@pytest.mark.parametrize(
    ("method", "host", "path", "token", "response"),
    [
        ("POST", "teams.microsoft.com", "/api/authsvc/v1.0/authz", True, True),
        ("POST", "teams.cloud.microsoft", "/api/authsvc/v1.0/authz", True, True),
        ("POST", "authsvc.teams.microsoft.com", "/v1.0/authz", True, True),
        ("POST", "teams.live.com", "/api/auth/v1.0/authz/consumer", True, True),
        (
            "POST",
            "teams.microsoft.com",
            "/api/mt/part/emea-02/beta/users/fetchShortProfile?x=1",
            True,
            True,
        ),
        ("POST", "teams.microsoft.com", "/api/mt/emea/beta/users/fetchFederated", True, True),
        ("GET", "teams.microsoft.com", "/api/mt/emea/beta/users/tenants", True, False),
        ("GET", "emea.ng.msg.teams.microsoft.com", f"/v1/threads/{CONV}/", False, True),
        (
            "GET",
            "emea.ng.msg.teams.microsoft.com",
            f"/v1/threads/{CONV}?view=msnp24Equivalent",
            False,
            True,
        ),
        (
            "GET",
            "teams.cloud.microsoft",
            f"/api/chatsvc/emea/v1/threads/{CONV}/members?pageSize=100",
            False,
            True,
        ),
        (
            "GET",
            "teams.microsoft.com",
            f"/api/chatsvc/emea/v1/threads/{CONV}/consumptionhorizons",
            False,
            True,
        ),
        (
            "GET",
            "emea.ng.msg.teams.microsoft.com",
            f"/v1/users/ME/conversations/{CONV}?view=x",
            False,
            True,
        ),
        (
            "GET",
            "emea.ng.msg.teams.microsoft.com",
            f"/v1/users/ME/conversations/{CONV}/messages",
            False,
            False,
        ),
        (
            "PUT",
            "emea.ng.msg.teams.microsoft.com",
            f"/v1/threads/{CONV}/members/8:orgid:x",
            False,
            False,
        ),
    ],
)
def test_tokens_and_lookup_responses_are_observed_where_the_resolver_learns_from_them(
    method: str, host: str, path: str, token: bool, response: bool
) -> None:
    decided = route(method, host, path, consumer=True)
    assert (decided.observe_token, decided.observe_response) == (token, response)


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        (
            "POST",
            f"/v1/users/ME/conversations/{CONV}/messages",
            b'{"messagetype":"Text"}',
            "message",
        ),
        (
            "POST",
            f"/api/chatsvc/emea/v1/users/ME/conversations/{CONV}/messages",
            b'{"messagetype": "Control/Typing", "content": ""}',
            "typing",
        ),
        (
            "POST",
            f"/v1/users/ME/conversations/{CONV}/messages",
            b'{"messagetype":"Control/Typing","messagetype":"RichText/Html"}',
            "message",
        ),
        (
            "POST",
            f"/v1/users/ME/conversations/{CONV}/messages",
            b'{"MessageType":"Control/Typing","messagetype":"RichText/Html"}',
            "message",
        ),
        (
            "POST",
            f"/v1/users/ME/conversations/{CONV}/messages",
            b'{"content":"\\"messagetype\\":\\"Control/Typing\\""}',
            "message",
        ),
        ("PUT", f"/v1/users/ME/conversations/{CONV}/messages/17", b"{}", "message"),
        (
            "DELETE",
            f"/v1/users/ME/conversations/{CONV}/messages/17?behavior=softDelete",
            b"",
            "message",
        ),
        (
            "PUT",
            f"/v1/users/ME/conversations/{CONV}/messages/17/properties?name=emotions",
            b"{}",
            "reaction",
        ),
        (
            "PUT",
            f"/v1/users/ME/conversations/{CONV}/properties?name=consumptionhorizon",
            b"{}",
            "receipt",
        ),
        ("PUT", f"/v1/threads/{CONV}/members/8:orgid:x", b"{}", "membership"),
        ("POST", "/v1/threads", b"{}", "thread"),
        ("PUT", f"/v1/threads/{CONV}/properties?name=topic", b"{}", "thread"),
        ("GET", "/api/mt/emea/beta/users/a%40b/externalsearchv3", b"", "search"),
        ("GET", f"/v1/users/ME/conversations/{CONV}/messages", b"", "read"),
        ("POST", "/v1/users/ME/endpoints", b"{}", "other"),
    ],
)
def test_action_classes_come_from_method_and_path_shape(
    method: str, path: str, body: bytes, expected: str
) -> None:
    assert action_class(method, path, body) == expected


def test_a_huge_body_is_never_scanned_for_a_typing_indicator() -> None:
    body = b'{"messagetype":"Control/Typing","content":"' + b"x" * 70_000 + b'"}'
    assert action_class("POST", "/v1/users/ME/conversations/x/messages", body) == "message"


def test_a_remembered_host_kind_still_depends_on_the_consumer_switch() -> None:
    for _ in range(2):  # the second round is answered from the cache
        assert host_kind("teams.live.com") is HostKind.TEAMS_TUNNELLED
        assert host_kind("teams.live.com", True) is HostKind.FRONT_DOOR
        assert host_kind("teams.live.com", consumer=False) is HostKind.TEAMS_TUNNELLED
        assert host_kind("127.0.0.1") is HostKind.FOREIGN


def test_routes_of_long_paths_or_methods_are_worked_out_each_time_and_not_kept() -> None:
    path = "/v1/users/ME/conversations/19:" + "a" * 2000 + "@thread.v2/messages"
    host = "emea.ng.msg.teams.microsoft.com"
    kept = _routed.cache_info().currsize
    assert route("POST", host, path).decide
    # mitmproxy reads a method of any length: a client sending ever new long ones
    # must not fill the interceptor's memory.
    assert route("X" * 100_000, host, "/v1/users/ME/conversations/c/messages").decide
    assert _routed.cache_info().currsize == kept
    short = "/v1/users/ME/conversations/19:kept-route-test@thread.v2/messages"
    for _ in range(2):  # the second is answered from the kept routes
        assert route("POST", host, short).decide
        assert not route("GET", host, short).decide
        assert route("GET", host, short, decide_reads=True).decide
    assert _routed.cache_info().currsize == kept + 3
