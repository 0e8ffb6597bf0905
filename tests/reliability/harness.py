"""A firewall on real servers for the fault tests, and what a client saw of it.

Each fault test starts its own services (a unique subject prefix and database) and,
where it stops a server, its own nats-server or SecantusDB; everything it starts is
stopped by PID when the module ends. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
from pymongo import MongoClient

from services.common.contracts import Subjects
from tests.support.tokens import skypetoken
from tests.support.upstream import RecordingUpstream
from tests.support.walls import ALICE, EDIT, FIRM, PARTNER, RULES, SEND
from tfw.stack import Process, Stack, free_port

DECISION_HEADER = "x-teamsfirewall-decision"
DECIDE_TIMEOUT_S = 1.5
# A client gives up well after the interceptor's own timeout: a request that reaches
# this is one that hung.
CLIENT_TIMEOUT_S = DECIDE_TIMEOUT_S + 8.0

SERVICES = ("resolver", "decider", "audit", "interceptor")


@dataclass
class Outcome:
    """What one client request ended as."""

    kind: str  # "send" (should be allowed) or "edit" (should be blocked by a rule)
    status: int | None = None
    decision_id: str | None = None
    message: str = ""
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def forwarded(self) -> bool:
        return self.status is not None and self.status < 400

    @property
    def failed_closed(self) -> bool:
        """Blocked by the fail mode (no verdict): the decider recorded nothing."""
        return self.status == 403 and "fail closed" in self.message

    @property
    def decided(self) -> bool:
        """A verdict from the decider reached the client (so a record must exist)."""
        return self.decision_id is not None and (
            self.forwarded or (self.status == 403 and not self.failed_closed)
        )


@dataclass
class Firewall:
    """The four services on ``stack``, with a recording stand-in for Teams."""

    stack: Stack
    upstream: RecordingUpstream
    prefix: str
    database: str
    rules_file: Path
    proxy_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    # --- the services -----------------------------------------------------------------

    def env(self, service: str) -> dict[str, str]:
        env = {"TFW_SUBJECT_PREFIX": self.prefix, "TFW_DATABASE": self.database}
        if service == "decider":
            env["TFW_RULES_FILE"] = str(self.rules_file)
        if service == "interceptor":
            env.update(
                {
                    "TFW_MAP_REMOTE": "|https://[^/]*teams\\.microsoft\\.com|"
                    f"http://127.0.0.1:{self.upstream.port}",
                    "TFW_DECIDE_TIMEOUT_S": str(DECIDE_TIMEOUT_S),
                    "TFW_DECISION_HEADER": "true",
                    "TFW_LISTEN_PORT": str(self.proxy_port),
                }
            )
        if service == "audit":
            # Unacknowledged records come back after ack_wait: short, so a test of a
            # killed audit sees them again within seconds.
            env.update(
                {"TFW_FETCH_TIMEOUT_S": "0.5", "TFW_RETRY_DELAY_S": "0.5", "TFW_ACK_WAIT_S": "3"}
            )
        env.update(self.extra_env)
        return env

    def start(self, service: str) -> Process:
        return self.stack.start_service(service, self.env(service))

    def start_all(self, services: Sequence[str] = SERVICES) -> None:
        for service in services:
            self.start(service)

    def metrics(self, service: str) -> str:
        port = self.stack.find(service).http_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()

    # --- clients ----------------------------------------------------------------------

    def client(self, timeout: float = CLIENT_TIMEOUT_S) -> httpx.Client:
        ca = self.stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"
        trust = ssl.create_default_context(cafile=str(ca))
        return httpx.Client(
            proxy=f"http://127.0.0.1:{self.proxy_port}", verify=trust, timeout=timeout
        )

    def request(
        self, kind: str = "send", client: httpx.Client | None = None, **extra: Any
    ) -> Outcome:
        """One send (allowed by the rules) or edit from abroad (blocked by a rule)."""
        outcome = Outcome(kind)
        own = client is None
        client = client or self.client()
        tenant = FIRM if kind == "send" else PARTNER
        headers = {"Authentication": f"skypetoken={skypetoken(ALICE, tenant)}"}
        headers.update(extra.pop("headers", {}))
        started = time.monotonic()
        try:
            if kind == "send":
                body = extra.pop("content", None) or orjson.dumps(
                    {"content": "hello", "messagetype": "Text"}
                )
                response = client.post(SEND, content=body, headers=headers)
            else:
                body = orjson.dumps({"content": "edited", "messagetype": "Text"})
                response = client.put(EDIT, content=body, headers=headers)
            outcome.status = response.status_code
            outcome.decision_id = response.headers.get(DECISION_HEADER)
            if response.status_code >= 400:
                try:
                    outcome.message = str(orjson.loads(response.content).get("message", ""))
                except orjson.JSONDecodeError:
                    outcome.message = response.text[:200]
        except httpx.HTTPError as exc:
            outcome.error = type(exc).__name__
        finally:
            outcome.elapsed_s = time.monotonic() - started
            if own:
                client.close()
        return outcome

    def load(
        self, count: int, during: Callable[[], None] | None = None, after: int = 4, workers: int = 6
    ) -> list[Outcome]:
        """``count`` requests from ``workers`` clients at once (alternating sends and
        edits); ``during`` runs once ``after`` of them have finished, while the rest
        are in flight."""
        finished: list[Outcome] = []
        kinds = ["send" if n % 3 else "edit" for n in range(count)]
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(self.request, kind) for kind in kinds]
            if during is not None:
                deadline = time.monotonic() + 30
                while sum(f.done() for f in futures) < after and time.monotonic() < deadline:
                    time.sleep(0.01)
                during()
            for future in futures:
                finished.append(future.result())
        return finished

    def wait_until_allowed(self, timeout: float = 30.0) -> float:
        """Seconds until a send is forwarded again; fails the test at ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            outcome = self.request("send", client=None)
            if outcome.forwarded:
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"no send was forwarded within {timeout:.0f}s")

    # --- the archive ----------------------------------------------------------------------

    def archived_ids(self) -> list[str]:
        assert self.stack.mongodb_uri
        mongo: MongoClient[dict[str, Any]]
        with MongoClient(self.stack.mongodb_uri, serverSelectionTimeoutMS=5000) as mongo:
            cursor = mongo[self.database].decisions.find({}, {"decision_id": 1, "_id": 0})
            return [str(doc["decision_id"]) for doc in cursor]

    def wait_archived(self, ids: Iterable[str], timeout: float = 30.0) -> Counter[str]:
        """How often each archived id is stored, once every id in ``ids`` is (or at
        the deadline)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            counts = Counter(self.archived_ids())
            if wanted <= counts.keys() or time.monotonic() > deadline:
                return counts
            time.sleep(0.2)

    def stream_messages(self) -> int:
        """How many decision records the stream holds."""

        async def count() -> int:
            assert self.stack.nats_url
            nc = await nats.connect(self.stack.nats_url, connect_timeout=5)
            try:
                info = await nc.jetstream().stream_info(Subjects(self.prefix).decision_stream)
                return int(info.state.messages)
            finally:
                await nc.close()

        return asyncio.run(count())


def new_firewall(stack: Stack, upstream: RecordingUpstream, tag: str) -> Firewall:
    """A firewall description with a fresh prefix and database (services not started)."""
    prefix = tag + secrets.token_hex(3)
    rules = stack.data_dir / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return Firewall(stack, upstream, prefix, f"tfw_{prefix}", rules, proxy_port=free_port())


@contextmanager
def running_firewall(
    infra: Stack,
    tmp_path_factory: pytest.TempPathFactory,
    tag: str,
    services: Sequence[str] = SERVICES,
    env: dict[str, str] | None = None,
) -> Iterator[Firewall]:
    """A firewall of its own (data directory, prefix, database, recording upstream) on
    the session's nats-server and MongoDB, with ``services`` started and ``env`` added
    to theirs; every process stopped on leaving."""
    data = tmp_path_factory.mktemp(tag)
    stack = Stack(data, log=infra.log, nats_url=infra.nats_url, mongodb_uri=infra.mongodb_uri)
    with RecordingUpstream() as upstream, stack:
        firewall = new_firewall(stack, upstream, tag)
        firewall.extra_env.update(env or {})
        firewall.start_all(services)
        yield firewall


def assert_every_request_ended(outcomes: list[Outcome], proxy_alive: bool = True) -> None:
    """Each request was forwarded with a verdict or blocked with a reason, in time."""
    for outcome in outcomes:
        assert outcome.elapsed_s < CLIENT_TIMEOUT_S, f"a request hung: {outcome}"
        if proxy_alive:
            assert outcome.error is None, f"a request got no answer: {outcome}"
        if outcome.error is not None:
            continue
        assert outcome.decision_id, f"an answer without a decision id: {outcome}"
        if outcome.forwarded:
            assert outcome.kind == "send", f"a blocked kind of request went through: {outcome}"
        else:
            assert outcome.status == 403 and outcome.message, f"a block without a reason: {outcome}"
            if outcome.kind == "edit" and not outcome.failed_closed:
                assert "No edits abroad" in outcome.message
