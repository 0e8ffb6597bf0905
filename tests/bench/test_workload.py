"""The benchmark's sends: real accounts and conversations of the demo organisation."""

from __future__ import annotations

import orjson

from tfw.bench.workload import (
    CHAT_HOST,
    DEMO_DATA,
    accounts_of,
    build_requests,
    expected_verdicts,
    message_body,
)
from tfw.sim.org import load_org


def test_every_send_names_a_member_of_its_conversation() -> None:
    org = load_org(DEMO_DATA / "org.yaml")
    for mix in ("allowed", "mixed"):
        tokens = {account: f"token-of-{account}" for account in accounts_of(mix)}
        for raw in build_requests(org, mix, tokens, copies=1):
            head, _, body = raw.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            assert lines[0].startswith("POST /v1/users/ME/conversations/19%3A")
            assert f"Host: {CHAT_HOST}" in lines
            assert f"Content-Length: {len(body)}" in lines
            sent = orjson.loads(body)
            conversation = org.conversation(sent["conversationid"])
            assert conversation is not None
            assert org.is_member(conversation, sent["from"])
            assert any(line == f"authentication: skypetoken=token-of-{a}"
                       for a in tokens for line in lines)


def test_the_mixed_mix_blocks_one_send_in_five() -> None:
    assert expected_verdicts("allowed") == {"allow": 8}
    assert expected_verdicts("mixed") == {"allow": 8, "block": 2}


def test_a_send_is_the_new_clients_envelope() -> None:
    org = load_org(DEMO_DATA / "org.yaml")
    from tfw.bench.workload import ALLOWED

    body = orjson.loads(message_body(org, ALLOWED[0], 7))
    assert body["messagetype"] == "RichText/Html"
    assert body["properties"]["files"] == "[]"
    assert body["clientmessageid"].isdigit()
