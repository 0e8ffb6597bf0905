"""The audit service: a durable pull consumer of ``TFW_DECISIONS`` into the archive.

A record is acknowledged only after MongoDB has it, so a crash or a database outage
delays records but never loses them; redelivered records are stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import Counter
from pymongo import AsyncMongoClient

from services.audit.archive import Archive
from services.audit.settings import AuditSettings
from services.common.bus import BusService, decision_stream_config
from services.common.contracts import ContractError, DecisionRecord, decode
from services.common.ops import spawn

log = logging.getLogger(__name__)

ARCHIVED = Counter("tfw_audit_records_total", "Decision records archived", ["outcome"])


class Audit(BusService):
    name = "audit"

    def __init__(self, settings: AuditSettings) -> None:
        super().__init__(settings)
        self.settings: AuditSettings = settings
        timeout_ms = int(settings.mongo_timeout_s * 1000)
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongodb_uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            tz_aware=True,
        )
        self.archive = Archive(self.mongo, settings.database)
        self._consuming = False
        self._task: asyncio.Task[Any] | None = None
        self.health.add_check("consumer", lambda: self._consuming)

    async def setup(self) -> None:
        assert self.nc is not None
        js = self.nc.jetstream()
        config = decision_stream_config(
            self.subjects,
            self.settings.stream_max_age_s,
            self.settings.stream_max_bytes,
            self.settings.stream_replicas,
        )
        try:
            await js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
        await self.archive.ensure_indexes()
        self.subscription = await js.pull_subscribe(
            self.subjects.decisions_all,
            durable=self.settings.consumer,
            stream=self.subjects.decision_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.ack_wait_s,
                max_ack_pending=self.settings.batch_size * 4,
            ),
        )
        self._task = spawn(self.consume(), "audit-consume")

    async def teardown(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.mongo.close()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # A pull subscription has nothing in flight once the fetch loop ended; leaving
        # it to drain() makes the drain wait for its full timeout.
        if getattr(self, "subscription", None) is not None:
            with contextlib.suppress(nats.errors.Error):
                await self.subscription.unsubscribe()
        await super().stop()

    async def consume(self) -> None:
        while True:
            try:
                messages = await self.subscription.fetch(
                    self.settings.batch_size, timeout=self.settings.fetch_timeout_s
                )
            except TimeoutError:
                self._consuming = True
                continue
            except asyncio.CancelledError:
                raise
            except nats.errors.Error as exc:
                self._consuming = False
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            self._consuming = True
            try:
                await self.store(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Leave the batch unacknowledged: JetStream redelivers it after ack_wait.
                log.warning("archive unavailable (%s); %d records wait", exc, len(messages))
                for message in messages:
                    await message.nak(delay=1.0)
                await asyncio.sleep(1.0)

    async def store(self, messages: list[Msg]) -> None:
        records, readable = [], []
        for message in messages:
            try:
                records.append(decode(DecisionRecord, message.data))
                readable.append(message)
            except ContractError as exc:
                ARCHIVED.labels("rejected").inc()
                log.error("unreadable decision record %s: %s", message.metadata.sequence, exc)
                await message.term()
        new = await self.archive.store(records)
        ARCHIVED.labels("stored").inc(new)
        ARCHIVED.labels("duplicate").inc(len(records) - new)
        for message in readable:
            await message.ack()
