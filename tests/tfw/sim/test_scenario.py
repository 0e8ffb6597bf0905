"""Reading scenarios: the JSON-lines format and HAR captures."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tfw.sim.scenario import AS_CAPTURED, ScenarioError, load_scenario, parse_har, parse_jsonl

DEMO_DATA = Path(__file__).resolve().parents[3] / "tfw" / "demo_data"
SEND = "https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations/19%3Aa%40thread.v2/messages"


def line(**fields: object) -> str:
    base = {"id": "x1", "as": "nora", "auth": "skypetoken", "method": "POST", "url": SEND,
            "body": {"content": "hi"}}
    return orjson.dumps({**base, **fields}).decode()


def test_a_json_body_is_sent_as_json_a_string_as_it_is_and_null_as_nothing() -> None:
    requests = parse_jsonl("\n".join([
        line(id="a"), line(id="b", body="{not json"), line(id="c", body=None),
    ]))
    assert [r.body_bytes() for r in requests] == [b'{"content":"hi"}', b"{not json", None]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"auth": "kerberos"}, "auth 'kerberos'"),
        ({"method": "BREW"}, "method 'BREW'"),
        ({"url": "http://teams.microsoft.com/"}, "not an https URL"),
        ({"as": ""}, "'as' is missing"),
    ],
)
def test_a_bad_line_is_refused_naming_the_line(fields: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        parse_jsonl(line(id="ok") + "\n" + line(**fields), "s.jsonl")
    assert "s.jsonl:2" in str(caught.value)


def test_an_id_used_twice_is_refused() -> None:
    with pytest.raises(ScenarioError, match="used twice"):
        parse_jsonl(line() + "\n" + line())


def test_har_entries_take_their_comment_as_id_else_their_position() -> None:
    requests = load_scenario(DEMO_DATA / "sample.har")
    assert [r.id for r in requests] == [
        "omar-authz", "omar-profile", "nora-authz", "nora-profile",
        "capture-send", "capture-typing", "7", "not-teams",
    ]
    assert all(r.auth == AS_CAPTURED and r.account is None for r in requests)


def test_har_replay_keeps_captured_credentials_but_not_transport_headers() -> None:
    first = load_scenario(DEMO_DATA / "sample.har")[4]
    names = {name.lower() for name in first.headers}
    assert "authentication" in names
    assert not names & {"host", ":authority", "content-length"}
    assert orjson.loads(first.body_bytes() or b"")["messagetype"] == "RichText/Html"


def test_a_file_that_is_not_har_is_refused() -> None:
    with pytest.raises(ScenarioError, match="not a HAR file"):
        parse_har('{"entries": []}')


def test_the_demo_scenario_covers_every_action_kind_of_credential_and_front_door() -> None:
    requests = load_scenario(DEMO_DATA / "scenario.jsonl")
    assert {r.auth for r in requests} == {
        "skypetoken", "x-skypetoken", "bearer", "both", "none", "garbage-token"
    }
    hosts = {r.host for r in requests}
    assert {"teams.microsoft.com", "teams.cloud.microsoft"} <= hosts
    assert any(h.endswith(".ng.msg.teams.microsoft.com") for h in hosts)
    assert {r.method for r in requests} == {"GET", "POST", "PUT", "DELETE"}
