"""The whole demo through the real stack (mitmproxy, NATS, SecantusDB, the four
services at DEBUG, the Teams simulator), then every log line, every decision record
in the stream and the archive, and every document of every collection searched for
any fragment of any token the clients sent: none may be found."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from pymongo import MongoClient

from services.common.contracts import Subjects
from tfw.sim.client import Replayer, ReplayResult
from tfw.sim.demo_run import outcomes, prepare_rules, start_services
from tfw.sim.org import load_org
from tfw.sim.scenario import load_scenario
from tfw.sim.teams import TeamsSimulator
from tfw.stack import ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEMO = ROOT / "tfw" / "demo_data"
FRAGMENT = 16  # characters of base64url: unique to one token, never a coincidence


class CapturedLog:
    """Every line the stack's processes write, kept in memory."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self.lines.append(text)

    def flush(self) -> None:
        pass


@dataclass
class DemoRun:
    tokens: list[str]
    results: list[ReplayResult]
    logs: list[str]
    collections: dict[str, list[dict[str, Any]]]
    stream: list[bytes]


def _stream_messages(nats_url: str, prefix: str) -> list[bytes]:
    async def read() -> list[bytes]:
        nc = await nats.connect(nats_url, connect_timeout=5)
        try:
            js = nc.jetstream()
            stream = Subjects(prefix).decision_stream
            info = await js.stream_info(stream)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                message = await js.get_msg(stream, seq)
                found.append(message.data or b"")
            return found
        finally:
            await nc.close()

    return asyncio.run(read())


@pytest.fixture(scope="module")
def demo(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    data = tmp_path_factory.mktemp("token-leaks")
    org = load_org(DEMO / "org.yaml")
    requests = load_scenario(DEMO / "scenario.jsonl")
    rules = prepare_rules(DEMO / "rules.xml", data / "rules")
    prefix = "leak" + secrets.token_hex(3)
    database = f"tfw_{prefix}"
    common = {"TFW_SUBJECT_PREFIX": prefix, "TFW_DATABASE": database, "TFW_LOG_LEVEL": "DEBUG",
              "TFW_LOG_FORMAT": "json"}
    log = CapturedLog()
    assert infra.nats_url and infra.mongodb_uri
    stack = Stack(data, log=log, nats_url=infra.nats_url, mongodb_uri=infra.mongodb_uri)  # type: ignore[arg-type]
    with TeamsSimulator(org) as simulator, stack:
        start_services(stack, simulator.port, rules, common)
        proxy = stack.find("interceptor")
        ca = data / "mitmproxy" / "mitmproxy-ca-cert.pem"
        with Replayer(org, f"http://127.0.0.1:{proxy.port}", ca, simulator) as replayer:
            results = replayer.replay(requests)
            tokens = [
                token
                for session in replayer.sessions.values()
                for token in (session.spaces_token, session.chat_bearer, session.skypetoken)
            ]
        outcomes(results, infra.mongodb_uri, database)  # waits until audit archived them
    # The services are stopped: their last log lines are in.
    with MongoClient(infra.mongodb_uri, serverSelectionTimeoutMS=5000) as mongo:
        db = mongo[database]
        collections = {name: list(db[name].find()) for name in db.list_collection_names()}
    stream = _stream_messages(infra.nats_url, prefix)
    yield DemoRun(tokens, results, log.lines, collections, stream)


def _fragments(token: str) -> set[str]:
    """Overlapping pieces of a token's claims and signature (its header is shared by
    every token and proves nothing)."""
    pieces = set()
    for part in token.split(".")[1:]:
        for start in range(0, max(1, len(part) - FRAGMENT + 1), FRAGMENT // 2):
            piece = part[start : start + FRAGMENT]
            if len(piece) == FRAGMENT:
                pieces.add(piece)
    return pieces


def _text(value: Any) -> str:
    """Everything in a stored value as searchable text, binary included."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return " ".join(f"{_text(k)}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(_text(item) for item in value)
    return str(value)


def _leaks(tokens: list[str], haystack: str) -> list[str]:
    return sorted({piece for token in tokens for piece in _fragments(token) if piece in haystack})


def test_the_demo_ran_and_left_something_to_search(demo: DemoRun) -> None:
    assert len(demo.tokens) >= 9
    assert len(demo.logs) > 100
    decided = [r for r in demo.results if r.decision_id]
    assert len(decided) >= 20
    assert len(demo.collections.get("decisions", [])) == len(decided)
    assert len(demo.stream) >= len(decided)
    assert demo.collections.get("tokens"), "no token was stored, so none could leak there"
    # The search itself finds a token where there is one.
    assert _leaks(demo.tokens[:1], f"log line with {demo.tokens[0]} inside")


def test_no_log_line_holds_a_token_fragment(demo: DemoRun) -> None:
    assert _leaks(demo.tokens, "\n".join(demo.logs)) == []


def test_no_decision_record_holds_a_token_fragment(demo: DemoRun) -> None:
    records = "\n".join(message.decode("utf-8", "replace") for message in demo.stream)
    assert _leaks(demo.tokens, records) == []
    assert _leaks(demo.tokens, _text(demo.collections.get("decisions", []))) == []


@pytest.mark.parametrize(
    "collection",
    ["tokens", "users", "conversations", "endpoints", "decisions", "audit_admin_log", "*"],
)
def test_no_stored_document_holds_a_token_fragment(demo: DemoRun, collection: str) -> None:
    if collection == "*":
        chosen = demo.collections
    else:
        chosen = {collection: demo.collections.get(collection, [])}
    assert _leaks(demo.tokens, _text(chosen)) == []
