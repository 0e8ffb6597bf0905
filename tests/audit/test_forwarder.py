"""The syslog forwarder on a real nats-server: its own durable consumer, outages delay."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from services.audit.forwarder import SyslogForwarder
from services.audit.settings import AuditSettings
from services.audit.stream import ensure_decision_stream
from services.common.contracts import DecisionRecord, Subjects, encode
from services.common.ops import spawn
from tests.audit.support import records
from tests.audit.syslog_receiver import SyslogReceiver
from tests.support.certs import self_signed


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[tuple[NATS, Subjects]]:
    nc = await nats.connect(nats_url)
    subjects = Subjects("tfwd" + secrets.token_hex(3))
    yield nc, subjects
    await nc.jetstream().delete_stream(subjects.decision_stream)
    await nc.close()


async def publish(nc: NATS, subjects: Subjects, batch: list[DecisionRecord]) -> None:
    js = nc.jetstream()
    for item in batch:
        await js.publish(
            subjects.decision(item.decision),
            encode(item),
            stream=subjects.decision_stream,
            headers={"Nats-Msg-Id": item.decision_id},
        )


async def forwarding(
    nc: NATS, subjects: Subjects, settings: AuditSettings
) -> tuple[SyslogForwarder, asyncio.Task[None]]:
    await ensure_decision_stream(nc.jetstream(), subjects, settings)
    forwarder = SyslogForwarder(nc.jetstream(), subjects, settings)
    await forwarder.subscribe()
    return forwarder, spawn(forwarder.run(), "test-forwarder")


def settings_for(subjects: Subjects, port: int, **extra: object) -> AuditSettings:
    return AuditSettings.load(
        env={},
        subject_prefix=subjects.prefix,
        mode="forwarder",
        syslog_host="127.0.0.1",
        syslog_port=port,
        retry_delay_s=0.2,
        fetch_timeout_s=0.3,
        stream_max_bytes=64 * 1024 * 1024,  # JetStream reserves it up front
        **extra,
    )


async def stop(forwarder: SyslogForwarder, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await forwarder.unsubscribe()


async def test_a_siem_outage_delays_records_but_loses_none(
    bus: tuple[NATS, Subjects],
) -> None:
    nc, subjects = bus
    receiver = SyslogReceiver()
    await receiver.start()
    forwarder, task = await forwarding(nc, subjects, settings_for(subjects, receiver.port))
    try:
        first = records(5)
        await publish(nc, subjects, first)
        await receiver.wait_for(5)

        await receiver.stop()
        second = records(7)
        await publish(nc, subjects, second)
        async with asyncio.timeout(10):
            while forwarder.connected:
                await asyncio.sleep(0.05)

        receiver = SyslogReceiver(port=receiver.port)
        await receiver.start()
        await receiver.wait_for(7)
        expected = {item.decision_id for item in second}
        assert expected <= set(receiver.decision_ids())
        assert all(m["appname"] == "teamsfirewall" for m in receiver.messages)
    finally:
        await stop(forwarder, task)
        await receiver.stop()


async def test_the_forwarder_durable_consumer_is_separate_from_the_archive_one(
    bus: tuple[NATS, Subjects],
) -> None:
    nc, subjects = bus
    receiver = SyslogReceiver()
    await receiver.start()
    forwarder, task = await forwarding(nc, subjects, settings_for(subjects, receiver.port))
    try:
        await publish(nc, subjects, records(3))
        await receiver.wait_for(3)
        # The forwarder acknowledges each record once its receiver has it: just after.
        async with asyncio.timeout(10):
            while True:
                info = await nc.jetstream().consumer_info(
                    subjects.decision_stream, "audit-syslog"
                )
                if info.num_ack_pending == 0:
                    break
                await asyncio.sleep(0.05)
        assert info.delivered.stream_seq == 3
        consumers = await nc.jetstream().consumers_info(subjects.decision_stream)
        assert [c.name for c in consumers] == ["audit-syslog"]
    finally:
        await stop(forwarder, task)
        await receiver.stop()


async def test_records_go_over_tls_to_a_receiver_the_ca_file_trusts(
    bus: tuple[NATS, Subjects], tmp_path: Path
) -> None:
    nc, subjects = bus
    cert, key = self_signed(tmp_path, "siem.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver = SyslogReceiver(tls=context)
    await receiver.start()
    settings = settings_for(
        subjects, receiver.port, syslog_tls=True, syslog_tls_ca=str(cert), syslog_format="json"
    )
    forwarder, task = await forwarding(nc, subjects, settings)
    try:
        batch = records(3)
        await publish(nc, subjects, batch)
        await receiver.wait_for(3)
        assert set(receiver.decision_ids()) == {item.decision_id for item in batch}
    finally:
        await stop(forwarder, task)
        await receiver.stop()
