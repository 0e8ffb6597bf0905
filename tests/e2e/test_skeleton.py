"""The walking skeleton, end to end on real servers: mitmproxy, NATS, SecantusDB."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from pymongo import MongoClient

from tests.support.tokens import skypetoken
from tests.support.upstream import RecordingUpstream
from tests.support.walls import ALICE, EDIT, FIRM, PARTNER, RULES, SEND
from tfw.stack import Stack

pytestmark = pytest.mark.e2e


class Skeleton:
    def __init__(
        self, stack: Stack, upstream: RecordingUpstream, prefix: str, database: str
    ) -> None:
        self.stack = stack
        self.upstream = upstream
        self.prefix = prefix
        self.database = database
        self.proxy_port = stack.find("interceptor").port
        self.ca = stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(
            proxy=f"http://127.0.0.1:{self.proxy_port}", verify=str(self.ca), timeout=timeout
        )

    def archived(self, decision_id: str, timeout: float = 15.0) -> list[dict]:
        assert self.stack.mongodb_uri
        with MongoClient(self.stack.mongodb_uri) as mongo:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                found = list(mongo[self.database].decisions.find({"decision_id": decision_id}))
                if found:
                    return found
                time.sleep(0.2)
        return []


@pytest.fixture(scope="module")
def skeleton(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Skeleton]:
    data = tmp_path_factory.mktemp("skeleton")
    rules = data / "rules.yaml"
    rules.write_text(RULES)
    prefix = "t" + secrets.token_hex(4)
    database = f"tfw_{prefix}"
    stack = Stack(data, log=infra.log, nats_url=infra.nats_url, mongodb_uri=infra.mongodb_uri)
    with RecordingUpstream() as upstream, stack:
        env = {"TFW_SUBJECT_PREFIX": prefix, "TFW_DATABASE": database}
        stack.start_service("resolver", env)
        stack.start_service("decider", {**env, "TFW_RULES_FILE": str(rules)})
        stack.start_service("audit", env)
        stack.start_service(
            "interceptor",
            {
                **env,
                "TFW_MAP_REMOTE": f"|https://[^/]*teams\\.microsoft\\.com|http://127.0.0.1:{upstream.port}",
                "TFW_DECIDE_TIMEOUT_S": "1.5",
            },
        )
        yield Skeleton(stack, upstream, prefix, database)


def _auth(oid: str, tid: str) -> dict[str, str]:
    return {"Authentication": f"skypetoken={skypetoken(oid, tid)}"}


def test_allowed_send_reaches_teams_and_is_archived_once(skeleton: Skeleton) -> None:
    with skeleton.client() as client:
        response = client.post(
            SEND, json={"content": "hi", "messagetype": "Text"}, headers=_auth(ALICE, FIRM)
        )
    assert response.status_code == 201
    assert any("/conversations/" in path for path in skeleton.upstream.paths())
    decision_id = response.headers.get("x-teamsfirewall-decision")
    assert decision_id is None  # allowed requests carry the upstream's answer
    # The decision is found by the conversation in the archive, exactly once.
    with MongoClient(skeleton.stack.mongodb_uri) as mongo:
        deadline = time.monotonic() + 15
        found: list[dict] = []
        while time.monotonic() < deadline and not found:
            found = list(mongo[skeleton.database].decisions.find({"action": "message.send"}))
            time.sleep(0.2)
    assert len(found) == 1
    assert found[0]["decision"] == "allow"
    assert found[0]["actor"]["tenant_id"] == FIRM


def test_blocked_edit_gets_the_block_response_and_never_reaches_teams(skeleton: Skeleton) -> None:
    before = len(skeleton.upstream.received)
    with skeleton.client() as client:
        response = client.put(
            EDIT, json={"content": "edited", "messagetype": "Text"}, headers=_auth(ALICE, PARTNER)
        )
    assert response.status_code == 403
    body = orjson.loads(response.content)
    assert "No edits abroad" in body["message"]
    assert len(skeleton.upstream.received) == before
    records = skeleton.archived(body["decisionId"])
    assert len(records) == 1
    assert records[0]["decision"] == "block"
    assert records[0]["location"] == "external"
    assert [rule["name"] for rule in records[0]["rules"]] == ["No edits abroad"]


def test_non_teams_host_is_not_decided(skeleton: Skeleton) -> None:
    assert skeleton.stack.find("interceptor")
    # Any host outside the Teams families passes without a decision; the map_remote
    # rule does not apply, so the connection simply fails upstream (no block body).
    with skeleton.client(timeout=5) as client:
        try:
            response = client.get("http://127.0.0.1:9/")
            assert "TeamsFirewall" not in response.text
        except httpx.HTTPError:
            pass


def test_with_the_decider_stopped_a_request_is_blocked_within_the_timeout(
    skeleton: Skeleton,
) -> None:
    decider = skeleton.stack.find("decider")
    skeleton.stack.stop_process(decider)
    try:
        before = len(skeleton.upstream.received)
        started = time.monotonic()
        with skeleton.client() as client:
            response = client.post(
                SEND, json={"content": "hi", "messagetype": "Text"}, headers=_auth(ALICE, FIRM)
            )
        elapsed = time.monotonic() - started
        assert response.status_code == 403
        body = orjson.loads(response.content)
        assert "fail closed" in body["message"]
        assert "within the timeout" in body["message"]
        assert len(skeleton.upstream.received) == before
        assert elapsed < 10
    finally:
        skeleton.stack.start_service(
            "decider",
            {
                "TFW_SUBJECT_PREFIX": skeleton.prefix,
                "TFW_DATABASE": skeleton.database,
                "TFW_RULES_FILE": str(skeleton.stack.data_dir / "rules.yaml"),
            },
        )


def test_nothing_is_left_running_after_stop(tmp_path: Path, infra: Stack) -> None:
    stack = Stack(tmp_path, log=infra.log, nats_url=infra.nats_url)
    process = stack.start_service("resolver", {"TFW_SUBJECT_PREFIX": "tstop"})
    stack.stop()
    assert process.popen.poll() is not None
    assert asyncio.run(asyncio.sleep(0, result=True))
