"""The syslog forwarder: its own durable consumer of ``TFW_DECISIONS`` to a SIEM.

Records are sent as RFC 5424 messages (CEF or JSON body) over TCP, or TLS when
configured, and acknowledged to JetStream only after the batch was written and the
socket drained. While the SIEM is down nothing is acknowledged, so the stream keeps
the records and they go out when it is back: an outage delays, never drops.

Plain syslog over TCP has no application-level acknowledgement: a batch written
just before the receiver dies can be lost in its socket buffer. The forwarder
checks for a closed peer before each batch, which catches a receiver that stopped or
restarted between batches; SIEMs that must not lose even that window should read
the stream directly (see ``examples/vector``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from services.audit import rfc5424
from services.audit.settings import AuditSettings
from services.audit.stream import durable_pull
from services.common.contracts import ContractError, DecisionRecord, Subjects, decode

log = logging.getLogger(__name__)

FORWARDED = Counter("tfw_audit_syslog_total", "Records sent to syslog", ["outcome"])


class SyslogForwarder:
    """Pulls batches and writes them to one syslog receiver."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, settings: AuditSettings) -> None:
        self.js = js
        self.subjects = subjects
        self.settings = settings
        self.connected = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._down_since_logged = False

    async def subscribe(self) -> None:
        """Create or bind the forwarder's durable pull consumer."""
        self.subscription = await durable_pull(
            self.js, self.subjects, self.settings, self.settings.syslog_consumer
        )

    async def unsubscribe(self) -> None:
        with contextlib.suppress(nats.errors.Error, AttributeError):
            await self.subscription.unsubscribe()
        await self._close()

    async def run(self) -> None:
        """Forward for ever; each failure is logged and the batch retried later."""
        while True:
            try:
                messages = await self.subscription.fetch(
                    self.settings.batch_size, timeout=self.settings.fetch_timeout_s
                )
            except TimeoutError:
                continue
            except nats.errors.Error as exc:
                log.warning("syslog forwarder fetch failed (%s); retrying", exc)
                await asyncio.sleep(self.settings.retry_delay_s)
                continue
            try:
                await self.forward(messages)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                await self._close()
                FORWARDED.labels("retried").inc(len(messages))
                if not self._down_since_logged:
                    log.warning(
                        "syslog receiver %s:%d unavailable (%s); records wait in the stream",
                        self.settings.syslog_host,
                        self.settings.syslog_port,
                        exc,
                    )
                    self._down_since_logged = True
                for message in messages:
                    with contextlib.suppress(nats.errors.Error):
                        await message.nak(delay=self.settings.retry_delay_s)
                await asyncio.sleep(self.settings.retry_delay_s)

    async def forward(self, messages: list[Msg]) -> None:
        """Write one batch, then acknowledge it."""
        writer = await self._connection()
        readable = []
        for message in messages:
            try:
                record = decode(DecisionRecord, message.data)
            except ContractError as exc:
                FORWARDED.labels("rejected").inc()
                log.error("unreadable decision record %s: %s", message.metadata.sequence, exc)
                await message.term()
                continue
            line = rfc5424.render(
                record.model_dump(mode="json", by_alias=True),
                app_name=self.settings.syslog_app_name,
                body=self.settings.syslog_format,
            )
            writer.write(rfc5424.frame(line))
            readable.append(message)
        await asyncio.wait_for(writer.drain(), self.settings.syslog_timeout_s)
        for message in readable:
            await message.ack()
        FORWARDED.labels("sent").inc(len(readable))
        if self._down_since_logged:
            log.info("syslog receiver is back; forwarding resumed")
            self._down_since_logged = False

    async def _connection(self) -> asyncio.StreamWriter:
        if self._writer is not None and self._reader is not None and not self._reader.at_eof():
            return self._writer
        await self._close()
        context: ssl.SSLContext | None = None
        if self.settings.syslog_tls:
            context = ssl.create_default_context(cafile=self.settings.syslog_tls_ca)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.settings.syslog_host, self.settings.syslog_port, ssl=context
            ),
            self.settings.syslog_timeout_s,
        )
        self._reader, self._writer = reader, writer
        self.connected = True
        log.info("connected to syslog %s:%d", self.settings.syslog_host, self.settings.syslog_port)
        return writer

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self.connected = False
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
