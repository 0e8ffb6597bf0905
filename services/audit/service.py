"""The audit service: durable pull consumers of ``TFW_DECISIONS``.

In ``archive`` mode a record is chained and stored in MongoDB, and only then
acknowledged, so a crash or a database outage delays records but never loses them;
redelivered records are stored once. The same process serves the query API
(uvicorn on ``api_port``) and purges records past the retention. In ``forwarder``
mode (or ``all``) a second durable consumer ships records to syslog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Generator
from typing import Any

import nats.errors
import nats.js.errors
import uvicorn
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge
from pymongo import AsyncMongoClient

from services.audit.api import create_app
from services.audit.archive import Archive
from services.audit.forwarder import SyslogForwarder
from services.audit.keys import ApiKeys
from services.audit.settings import AuditSettings
from services.audit.stream import durable_pull, ensure_decision_stream
from services.common.bus import BusService, watch_key
from services.common.contracts import ContractError, DecisionRecord, RuleSetDocument, decode
from services.common.ops import spawn

log = logging.getLogger(__name__)

ARCHIVED = Counter("tfw_audit_records_total", "Decision records archived", ["outcome"])
ARCHIVE_DOWN = Gauge("tfw_audit_archive_unavailable", "1 while MongoDB refuses records")
PURGED = Counter("tfw_audit_purged_total", "Records removed by the retention purge")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our event loop: the service owns the signals, not uvicorn."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


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
        self.archive = Archive(self.mongo, settings.database, settings.chain_partition)
        self.keys = ApiKeys(self.mongo, settings.database)
        self.forwarder: SyslogForwarder | None = None
        self.api_port: int | None = None
        self._consuming = False
        self._indexed = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._api: _EmbeddedServer | None = None
        self.health.add_check("consumer", lambda: self._consuming or not settings.archives)

    async def setup(self) -> None:
        assert self.nc is not None
        js = self.nc.jetstream()
        await ensure_decision_stream(js, self.subjects, self.settings)
        if self.settings.archives:
            self.subscription = await durable_pull(
                js, self.subjects, self.settings, self.settings.consumer
            )
            self._tasks.append(spawn(self.consume(), "audit-consume"))
            self._tasks.append(
                spawn(
                    watch_key(
                        self.nc,
                        self.subjects.rules_bucket,
                        self.subjects.rules_key,
                        self.on_rules,
                        include_history=True,
                    ),
                    "audit-rules-watch",
                )
            )
            if self.settings.retention_days > 0:
                self._tasks.append(spawn(self.purge_loop(), "audit-purge"))
            if self.settings.api_enabled:
                await self.start_api()
        if self.settings.forwards:
            self.forwarder = SyslogForwarder(js, self.subjects, self.settings)
            await self.forwarder.subscribe()
            self._tasks.append(spawn(self.forwarder.run(), "audit-syslog"))

    async def start_api(self) -> None:
        """Serve the query API from this process, on ``api_port`` (0: any free port)."""
        app = create_app(
            self.archive,
            self.keys,
            allow_anonymous=self.settings.api_allow_anonymous and not self.settings.is_production,
            page_max=self.settings.api_page_max,
        )
        listener = socket.socket(
            socket.AF_INET6 if ":" in self.settings.api_host else socket.AF_INET
        )
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.settings.api_host, self.settings.api_port))
        self.api_port = int(listener.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(self.settings.drain_timeout_s),
        )
        self._api = _EmbeddedServer(config)
        self._tasks.append(spawn(self._api.serve(sockets=[listener]), "audit-api"))
        await asyncio.wait_for(self._api.listening.wait(), 10)  # ready: the API answers
        log.info("audit API on http://%s:%d/docs", self.settings.api_host, self.api_port)

    async def stop(self) -> None:
        if self._api is not None:
            self._api.should_exit = True
        for task in self._tasks:
            if task.get_name() != "audit-api":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A pull subscription has nothing in flight once the fetch loop ended; leaving
        # it to drain() makes the drain wait for its full timeout.
        if getattr(self, "subscription", None) is not None:
            with contextlib.suppress(nats.errors.Error):
                await self.subscription.unsubscribe()
        if self.forwarder is not None:
            await self.forwarder.unsubscribe()
        await super().stop()

    async def on_rules(self, value: bytes) -> None:
        """A rule push is an admin action: keep it in the admin log. The watch replays
        the bucket's history, so pushes made while audit was down are logged too."""
        await self.archive.log_rule_push(decode(RuleSetDocument, value))

    async def teardown(self) -> None:
        await self.mongo.close()

    async def consume(self) -> None:
        """Fetch, store, acknowledge, for ever. A batch that cannot be stored is
        left unacknowledged and comes back."""
        while True:
            try:
                messages = await self.subscription.fetch(
                    self.settings.batch_size, timeout=self.settings.fetch_timeout_s
                )
            except TimeoutError:
                self._consuming = True
                continue
            except nats.errors.Error as exc:
                self._consuming = False
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(self.settings.retry_delay_s)
                continue
            self._consuming = True
            messages = await self.top_up(messages)
            try:
                await self.store(messages)
                ARCHIVE_DOWN.set(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ARCHIVE_DOWN.set(1)
                log.warning("archive unavailable (%s); %d records wait", exc, len(messages))
                for message in messages:
                    with contextlib.suppress(nats.errors.Error):
                        await message.nak(delay=self.settings.retry_delay_s)
                await asyncio.sleep(self.settings.retry_delay_s)

    async def top_up(self, messages: list[Msg]) -> list[Msg]:
        """Under a steady trickle a fetch returns a record or two; waiting
        ``batch_linger_s`` for more lets the archive store them in one insert. A failed
        top-up keeps the records already in hand."""
        linger = self.settings.batch_linger_s
        wanted = self.settings.batch_size - len(messages)
        if linger <= 0 or wanted <= 0:
            return messages
        await asyncio.sleep(linger)
        try:
            more = await self.subscription.fetch(wanted, timeout=linger)
        except (TimeoutError, nats.errors.Error):
            return messages
        return messages + more

    async def store(self, messages: list[Msg]) -> None:
        """Archive one batch, then acknowledge it."""
        records, readable = [], []
        for message in messages:
            try:
                records.append(decode(DecisionRecord, message.data))
                readable.append(message)
            except ContractError as exc:
                ARCHIVED.labels("rejected").inc()
                log.error("unreadable decision record %s: %s", message.metadata.sequence, exc)
                await message.term()
        if not self._indexed:
            # Here rather than at start, so the service starts while MongoDB is down
            # and records simply wait in the stream until it is back.
            await self.archive.ensure_indexes()
            self._indexed = True
        new = await self.archive.store(records)
        ARCHIVED.labels("stored").inc(new)
        ARCHIVED.labels("duplicate").inc(len(records) - new)
        for message in readable:
            await message.ack()

    async def purge_loop(self) -> None:
        """Remove records past the retention, every ``purge_interval_s``."""
        while True:
            try:
                cutoff = time.time() - self.settings.retention_days * 86400
                removed = await self.archive.purge(cutoff)
                if removed:
                    PURGED.inc(removed)
                    await self.archive.log_admin(
                        "retention", "purge", {"before": cutoff, "removed": removed}
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention purge failed; trying again later")
            await asyncio.sleep(self.settings.purge_interval_s)
