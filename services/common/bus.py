"""NATS connection and the life cycle every service shares.

A :class:`BusService` connects with reconnect, serves health and metrics, runs until
SIGTERM or SIGINT, then drains its subscriptions (finishing messages in hand) before
closing. :func:`main` wraps that for ``python -m services.<name>``: a bad setting
prints the key, the value and the reason and exits 2.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from prometheus_client import Counter, Gauge

from services.common.contracts import Subjects
from services.common.ops import HealthServer, configure_logging, run_forever, settle_heap
from services.common.settings import ServiceSettings, SettingsError

log = logging.getLogger(__name__)

NATS_EVENTS = Counter("tfw_nats_events_total", "NATS connection events", ["event"])
NATS_CONNECTED = Gauge("tfw_nats_connected", "1 while connected to NATS")


async def connect(settings: ServiceSettings, name: str) -> NATS:
    """Connect to NATS, reconnecting forever in the background after the first success."""

    async def disconnected() -> None:
        NATS_CONNECTED.set(0)
        NATS_EVENTS.labels("disconnected").inc()
        log.warning("NATS disconnected")

    async def reconnected() -> None:
        NATS_CONNECTED.set(1)
        NATS_EVENTS.labels("reconnected").inc()
        log.info("NATS reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    async def error(exc: Exception) -> None:
        NATS_EVENTS.labels("error").inc()
        log.warning("NATS error: %s", exc)

    async def closed() -> None:
        NATS_CONNECTED.set(0)
        log.info("NATS connection closed")

    options: dict[str, Any] = {
        "servers": [url.strip() for url in settings.nats_url.split(",")],
        "name": name,
        "connect_timeout": settings.nats_connect_timeout_s,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "allow_reconnect": True,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        "closed_cb": closed,
        "pending_size": 64 * 1024 * 1024,
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_tls_ca:
        import ssl

        context = ssl.create_default_context(cafile=settings.nats_tls_ca)
        options["tls"] = context
    nc = await nats.connect(**options)
    NATS_CONNECTED.set(1)
    log.info("connected to NATS as %s", name)
    return nc


def decision_stream_config(
    subjects: Subjects, max_age_s: float, max_bytes: int, replicas: int = 1
) -> StreamConfig:
    """The ``TFW_DECISIONS`` stream: file storage, explicit limits, a duplicate window
    so a retried publish (same ``Nats-Msg-Id``) is stored once."""
    return StreamConfig(
        name=subjects.decision_stream,
        subjects=[subjects.decisions_all],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=max_age_s,
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD,
        duplicate_window=120.0,
        num_replicas=replicas,
    )


class BusService:
    """Base of the resolver, decider and audit services."""

    name = "service"

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.subjects = Subjects(settings.subject_prefix)
        self.health = HealthServer(settings.http_host, settings.http_port)
        self.nc: NATS | None = None
        self._stopping = asyncio.Event()
        self.health.add_check("nats", lambda: self.nc is not None and self.nc.is_connected)

    async def setup(self) -> None:
        """Subscribe and prepare; called once connected."""

    async def teardown(self) -> None:
        """Release what ``setup`` took; called after the drain."""

    async def start(self) -> None:
        await self.health.start()
        from services.common.contracts import instance_name

        self.nc = await connect(self.settings, instance_name(self.name))
        await self.setup()
        settle_heap()
        log.info("%s ready", self.name)

    async def stop(self) -> None:
        log.info("%s draining", self.name)
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), self.settings.drain_timeout_s)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("drain did not finish cleanly: %s", exc)
                await self.nc.close()
        await self.teardown()
        await self.health.stop()
        log.info("%s stopped", self.name)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()


def main(
    settings_type: type[ServiceSettings],
    service_factory: Callable[[Any], BusService],
    argv: list[str] | None = None,
) -> int:
    """Entry point of ``python -m services.<name>``."""
    try:
        settings = settings_type.load()
    except SettingsError as exc:
        print(f"{getattr(service_factory, 'name', 'service')}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, getattr(service_factory, "name", ""))
    service = service_factory(settings)
    try:
        run_forever(service.run(), settings.event_loop)
    except SettingsError as exc:
        print(f"{service.name}: {exc}", file=sys.stderr)
        return 2
    except (OSError, nats.errors.NoServersError) as exc:
        log.error("%s cannot start: %s", service.name, exc)
        return 1
    return 0


async def watch_key(
    nc: NATS,
    bucket: str,
    key: str,
    on_value: Callable[[bytes], Any],
    ready: asyncio.Event | None = None,
    include_history: bool = False,
) -> None:
    """Follow one key of a KV bucket for ever, calling ``on_value`` with each version.

    Creates the bucket when missing. A callback that raises is logged and the watch
    goes on, so one bad value never stops the watcher; the previous value stays in use.
    """
    js = nc.jetstream()
    while True:
        try:
            try:
                kv = await js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                kv = await js.create_key_value(bucket=bucket, history=10)
            watcher = await kv.watch(key, include_history=include_history)
            async for entry in watcher:
                if entry is None:  # initial values delivered
                    if ready is not None:
                        ready.set()
                    continue
                if entry.operation is not None and entry.operation != "PUT":
                    continue
                try:
                    result = on_value(entry.value or b"")
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception(
                        "rejected a new value of %s/%s; keeping the previous one", bucket, key
                    )
                if ready is not None:
                    ready.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("watch of %s/%s interrupted (%s); retrying", bucket, key, exc)
            await asyncio.sleep(1.0)
