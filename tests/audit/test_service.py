"""The audit service as a process, on its own nats-server and SecantusDB: killed,
starved of its database, cut off from NATS, it stores every decision exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from pymongo import AsyncMongoClient

from services.audit.archive import Archive
from services.audit.keys import ApiKeys
from services.audit.settings import AuditSettings
from services.audit.stream import ensure_decision_stream
from services.common.bus import decision_stream_config
from services.common.contracts import DecisionRecord, RuleSetDocument, Subjects, encode
from tests.audit.support import records
from tfw.stack import Process, Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A nats-server and a SecantusDB of this module's own, so it may stop them."""
    stack = Stack(tmp_path_factory.mktemp("audit-service"), log=infra.log)
    with stack:
        stack.start_nats()
        stack.start_mongo()
        yield stack


class Deployment:
    """One prefix and database on the module's servers, with a publisher and a reader."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.subjects = Subjects("ta" + secrets.token_hex(3))
        self.database = "tfw_" + self.subjects.prefix
        self.nc: NATS | None = None
        self.env = {
            "TFW_SUBJECT_PREFIX": self.subjects.prefix,
            "TFW_DATABASE": self.database,
            "TFW_ACK_WAIT_S": "2",
            "TFW_BATCH_SIZE": "25",
            "TFW_FETCH_TIMEOUT_S": "0.5",
            "TFW_MONGO_TIMEOUT_S": "2",
            "TFW_RETRY_DELAY_S": "0.3",
            # JetStream reserves max_bytes per file stream up front: keep tests small.
            "TFW_STREAM_MAX_BYTES": str(64 * 1024 * 1024),
        }

    async def connect(self) -> None:
        assert self.stack.nats_url
        self.nc = await nats.connect(
            self.stack.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )

    async def start_audit(self) -> Process:
        return await asyncio.to_thread(self.stack.start_service, "audit", self.env)

    async def publish(self, batch: list[DecisionRecord], pause_every: int = 0) -> None:
        """Publish as the decider does; ``pause_every`` paces it to a steady stream."""
        assert self.nc is not None
        js = self.nc.jetstream()
        for index, item in enumerate(batch):
            if pause_every and index % pause_every == 0:
                await asyncio.sleep(0.02)
            for attempt in range(50):
                try:
                    await js.publish(
                        self.subjects.decision(item.decision),
                        encode(item),
                        stream=self.subjects.decision_stream,
                        headers={"Nats-Msg-Id": item.decision_id},
                        timeout=2,
                    )
                    break
                except (nats.errors.Error, TimeoutError):
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.2)

    def archive(self, client: AsyncMongoClient[dict[str, Any]]) -> Archive:
        return Archive(client, self.database)

    async def archived(self, expected: int, timeout: float = 60) -> list[str]:
        """The archived decision ids once there are ``expected`` of them (or the timeout)."""
        assert self.stack.mongodb_uri
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.stack.mongodb_uri, serverSelectionTimeoutMS=2000
        )
        try:
            ids: list[str] = []
            async with asyncio.timeout(timeout):
                while True:
                    found = client[self.database].decisions.find({}, {"decision_id": 1})
                    ids = [document["decision_id"] async for document in found]
                    if len(ids) >= expected:
                        return ids
                    await asyncio.sleep(0.3)
        finally:
            await client.close()

    async def verified(self) -> list[Any]:
        assert self.stack.mongodb_uri
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.stack.mongodb_uri)
        try:
            return await self.archive(client).verify()
        finally:
            await client.close()


@pytest.fixture
async def deployment(servers: Stack) -> AsyncIterator[Deployment]:
    deployment = Deployment(servers)
    await deployment.connect()
    yield deployment
    for process in list(servers.processes):
        if process.name == "audit":
            await asyncio.to_thread(servers.stop_process, process)
    assert deployment.nc is not None
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await deployment.nc.jetstream().delete_stream(deployment.subjects.decision_stream)
    await deployment.nc.close()


def metric(process: Process, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.http_port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_audit_killed_mid_stream_and_restarted_stores_every_decision_once(
    deployment: Deployment,
) -> None:
    audit = await deployment.start_audit()
    batch = records(600)
    publishing = asyncio.ensure_future(deployment.publish(batch, pause_every=5))
    await deployment.archived(100)
    assert not publishing.done()  # killed mid-stream
    await asyncio.to_thread(deployment.stack.stop_process, audit, 5, signal.SIGKILL)
    await publishing
    await deployment.start_audit()

    ids = await deployment.archived(600)
    await asyncio.sleep(2.5)  # past ack_wait: any redelivery would have landed by now
    ids = await deployment.archived(600)
    assert len(ids) == 600 == len(set(ids))
    assert set(ids) == {item.decision_id for item in batch}
    [report] = await deployment.verified()
    assert report.ok and report.checked == 600


async def test_with_the_database_down_for_a_while_nothing_is_lost(
    deployment: Deployment,
) -> None:
    stack = deployment.stack
    audit = await deployment.start_audit()
    await deployment.publish(records(20))
    await deployment.archived(20)

    mongo = stack.find("secantusdb")
    port = mongo.port
    await asyncio.to_thread(stack.stop_process, mongo)
    try:
        await deployment.publish(records(80))
        async with asyncio.timeout(30):
            while await asyncio.to_thread(metric, audit, "tfw_audit_archive_unavailable") != 1:
                await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(stack.start_mongo, port)

    ids = await deployment.archived(100)
    assert len(ids) == 100 == len(set(ids))
    [report] = await deployment.verified()
    assert report.ok and report.checked == 100


async def test_after_a_nats_server_restart_the_durable_consumer_resumes_by_itself(
    deployment: Deployment,
) -> None:
    stack = deployment.stack
    await deployment.start_audit()
    await deployment.publish(records(10))
    await deployment.archived(10)

    server = stack.find("nats")
    port = server.port
    await asyncio.to_thread(stack.stop_process, server)
    await asyncio.to_thread(stack.start_nats, port)

    await deployment.publish(records(15))
    ids = await deployment.archived(25)
    assert len(ids) == 25 == len(set(ids))


async def test_a_retried_publish_with_the_same_msg_id_is_archived_once(
    deployment: Deployment,
) -> None:
    await deployment.start_audit()
    batch = records(5)
    await deployment.publish(batch)
    await deployment.publish(batch[:3])  # as if the first acks had been lost
    assert deployment.nc is not None
    info = await deployment.nc.jetstream().stream_info(deployment.subjects.decision_stream)
    assert info.state.messages == 5
    assert len(await deployment.archived(5)) == 5


async def test_a_publish_to_a_missing_stream_is_an_error(deployment: Deployment) -> None:
    assert deployment.nc is not None
    with pytest.raises(nats.js.errors.Error):
        await deployment.nc.jetstream().publish(
            deployment.subjects.decision(records(1)[0].decision),
            b"{}",
            stream=deployment.subjects.decision_stream,
            timeout=2,
        )


async def test_the_service_serves_the_query_api_only_to_key_holders(
    deployment: Deployment,
) -> None:
    audit = await deployment.start_audit()
    await deployment.publish(records(3))
    await deployment.archived(3)
    assert deployment.stack.mongodb_uri
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(deployment.stack.mongodb_uri)
    try:
        _, secret = await ApiKeys(client, deployment.database).create("test", "read")
    finally:
        await client.close()
    base = f"http://127.0.0.1:{audit.port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        assert (await http.get("/v1/decisions")).status_code == 401
        response = await http.get("/v1/decisions", headers={"X-API-Key": secret})
        assert response.status_code == 200
        assert len(response.json()["items"]) == 3
        assert (await http.get("/docs")).status_code == 200


async def test_an_audit_started_while_the_database_is_down_archives_once_it_is_back(
    deployment: Deployment,
) -> None:
    stack = deployment.stack
    mongo = stack.find("secantusdb")
    port = mongo.port
    await asyncio.to_thread(stack.stop_process, mongo)
    try:
        await deployment.start_audit()
        await deployment.publish(records(10))
    finally:
        await asyncio.to_thread(stack.start_mongo, port)
    ids = await deployment.archived(10)
    assert len(ids) == 10
    [report] = await deployment.verified()
    assert report.ok and report.checked == 10


async def test_many_deployments_decision_streams_fit_on_one_local_server(
    deployment: Deployment,
) -> None:
    # Each decision stream reserves its 10 GiB default up front; the local stack's
    # server must take more of them than the disk could hold if they were full.
    assert deployment.nc is not None
    js = deployment.nc.jetstream()
    names = [Subjects(f"tmany{index}{secrets.token_hex(2)}") for index in range(12)]
    try:
        for subjects in names:
            await js.add_stream(decision_stream_config(subjects, 3600, 10 * 1024**3))
    finally:
        for subjects in names:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(subjects.decision_stream)


async def test_an_existing_stream_gets_the_configured_limits(deployment: Deployment) -> None:
    assert deployment.nc is not None
    js = deployment.nc.jetstream()
    base = {"subject_prefix": deployment.subjects.prefix, "stream_max_bytes": 64 * 1024**2}
    await ensure_decision_stream(js, deployment.subjects, AuditSettings.load(env={}, **base))
    wider = AuditSettings.load(env={}, stream_max_age_s=7200, **base)
    await ensure_decision_stream(js, deployment.subjects, wider)
    info = await js.stream_info(deployment.subjects.decision_stream)
    assert info.config.max_age == 7200


async def test_a_stream_without_the_decision_subjects_is_refused(deployment: Deployment) -> None:
    assert deployment.nc is not None
    js = deployment.nc.jetstream()
    subjects = deployment.subjects
    await js.add_stream(name=subjects.decision_stream, subjects=[f"{subjects.prefix}.other"])
    settings = AuditSettings.load(env={}, subject_prefix=subjects.prefix)
    with pytest.raises(RuntimeError, match="refusing to consume"):
        await ensure_decision_stream(js, subjects, settings)


class _Trickle:
    """A pull subscription stand-in: each fetch hands out what arrived meanwhile."""

    def __init__(self, *arrivals: list[str] | Exception) -> None:
        self.arrivals = list(arrivals)
        self.asked: list[int] = []

    async def fetch(self, batch: int, timeout: float) -> list[str]:
        self.asked.append(batch)
        arrival = self.arrivals.pop(0)
        if isinstance(arrival, Exception):
            raise arrival
        return arrival[:batch]


def _audit_with(subscription: _Trickle, **settings: Any) -> Any:
    from services.audit.service import Audit

    audit = Audit(AuditSettings.load(env={}, batch_size=4, **settings))
    audit.subscription = subscription  # type: ignore[assignment]
    return audit


async def test_a_partial_batch_waits_for_more_records_to_archive_them_together() -> None:
    trickle = _Trickle(["r2", "r3"])
    audit = _audit_with(trickle, batch_linger_s=0.01)
    assert await audit.top_up(["r1"]) == ["r1", "r2", "r3"]
    assert trickle.asked == [3]


async def test_a_full_batch_or_no_linger_is_archived_at_once() -> None:
    trickle = _Trickle()
    assert await _audit_with(trickle, batch_linger_s=0.01).top_up(["a", "b", "c", "d"]) == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert await _audit_with(trickle, batch_linger_s=0).top_up(["a"]) == ["a"]
    assert trickle.asked == []


async def test_a_failed_top_up_keeps_the_records_in_hand() -> None:
    for failure in (TimeoutError(), nats.errors.ConnectionClosedError()):
        audit = _audit_with(_Trickle(failure), batch_linger_s=0.01)
        assert await audit.top_up(["r1"]) == ["r1"]


async def test_every_rule_push_is_kept_once_in_the_admin_log(deployment: Deployment) -> None:
    await deployment.start_audit()
    assert deployment.nc is not None and deployment.stack.mongodb_uri
    js = deployment.nc.jetstream()
    try:
        kv = await js.key_value(deployment.subjects.rules_bucket)
    except nats.js.errors.BucketNotFoundError:
        kv = await js.create_key_value(bucket=deployment.subjects.rules_bucket)
    for version, who in (("v1aaaaaaaaaa", "ops@laptop"), ("v2bbbbbbbbbb", "ciso@desk")):
        document = RuleSetDocument(
            version=version, source="rules: []\n", pushed_at=time.time(), pushed_by=who
        )
        await kv.put(deployment.subjects.rules_key, encode(document))
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(deployment.stack.mongodb_uri)
    try:
        archive = deployment.archive(client)
        pushes: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while len(pushes) < 2:
                await asyncio.sleep(0.2)
                actions = await archive.admin_actions()
                pushes = [a for a in actions if a["action"] == "rules.push"]
        # A restarted audit sees the active version again and does not log it twice.
        for process in list(deployment.stack.processes):
            if process.name == "audit":
                await asyncio.to_thread(deployment.stack.stop_process, process)
        await deployment.start_audit()
        await asyncio.sleep(1.0)
        actions = await archive.admin_actions()
    finally:
        await client.close()
    pushes = [a for a in actions if a["action"] == "rules.push"]
    assert sorted((p["who"], p["detail"]["version"]) for p in pushes) == [
        ("ciso@desk", "v2bbbbbbbbbb"),
        ("ops@laptop", "v1aaaaaaaaaa"),
    ]
