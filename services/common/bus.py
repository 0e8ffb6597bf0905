"""NATS connection and the life cycle every service shares.

A :class:`BusService` connects with reconnect, serves health and metrics, runs until
SIGTERM or SIGINT, then drains its subscriptions (finishing messages in hand) before
closing. Requests it serves with :meth:`BusService.serve` are handled side by side
(:class:`Handlers`): nats-py awaits a subscription's callback before it hands over the
next message, so one slow request would otherwise hold every other.

:func:`main` wraps that for ``python -m services.<name>``: a bad setting prints the
key, the value and the reason and exits 2.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
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


Handler = Callable[[Msg], Awaitable[None]]


class Handlers:
    """The requests of a service in hand, each handled in a task of its own, at most
    ``limit`` at once.

    A request whose answer waits (a lookup in Teams, a store or JetStream slow to
    answer) holds only itself. When ``limit`` are in hand the subscription waits for
    one to finish, and nats-py keeps what arrives meanwhile in its pending queue (up to
    its limits; beyond them the requester times out and applies its fail mode). Each
    task starts at once, in the subscription's own turn of the event loop, so a request
    that never waits costs no extra turn.
    """

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._in_hand: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._in_hand)

    def of(self, handler: Handler) -> Handler:
        """The subscription callback that hands each message to ``handler``."""

        async def take(msg: Msg) -> None:
            await self._slots.acquire()
            if self._closed:  # stopping: left unanswered, as a request past the drain
                self._slots.release()
                return
            task = asyncio.Task(
                self._handle(handler, msg), loop=asyncio.get_running_loop(), eager_start=True
            )
            if not task.done():
                self._in_hand.add(task)
                task.add_done_callback(self._in_hand.discard)

        return take

    async def _handle(self, handler: Handler, msg: Msg) -> None:
        try:
            await handler(msg)
        except Exception:
            # Handlers answer their own failures; this is one that escaped them.
            log.exception("handling a message on %s failed", msg.subject)
        finally:
            self._slots.release()

    async def finish(self) -> None:
        """Wait until every request in hand has been handled."""
        while self._in_hand:
            await asyncio.wait(list(self._in_hand))

    def cancel(self) -> None:
        """Cancel the requests in hand, and start no other from now on."""
        self._closed = True
        for task in self._in_hand:
            task.cancel()


class BusService:
    """Base of the resolver, decider and audit services."""

    name = "service"

    def __init__(self, settings: ServiceSettings, max_in_flight: int = 1) -> None:
        self.settings = settings
        self.subjects = Subjects(settings.subject_prefix)
        self.health = HealthServer(settings.http_host, settings.http_port)
        self.nc: NATS | None = None
        self.handlers = Handlers(max_in_flight)
        self._served: list[Subscription] = []
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

    async def serve(self, subject: str, queue: str, handler: Handler) -> None:
        """Take requests on ``subject`` in queue group ``queue``, each handled by
        ``handler`` beside the others (:class:`Handlers`)."""
        assert self.nc is not None
        subscription = await self.nc.subscribe(subject, queue=queue, cb=self.handlers.of(handler))
        self._served.append(subscription)

    async def stop(self) -> None:
        log.info("%s draining", self.name)
        try:
            if self.nc is not None and not self.nc.is_closed:
                await self._close(self.nc)
        finally:
            try:
                await self.teardown()
            finally:
                await self.health.stop()
        log.info("%s stopped", self.name)

    async def _close(self, nc: NATS) -> None:
        """Drain when connected; otherwise, or when the drain fails or runs out of time,
        drop what is in hand (its interceptors apply their fail mode) and close."""
        if nc.is_connected:
            try:
                await asyncio.wait_for(self._drain(nc), self.settings.drain_timeout_s)
                return
            except Exception as exc:
                reason = "it ran out of time" if isinstance(exc, TimeoutError) else repr(exc)
                log.warning(
                    "drain did not finish cleanly (%s); %d request(s) in hand dropped",
                    reason,
                    len(self.handlers),
                )
        else:
            log.warning(
                "NATS is not connected: %d request(s) in hand dropped", len(self.handlers)
            )
        self.handlers.cancel()
        try:
            await nc.close()
        except Exception as exc:
            # What was buffered for a connection that is gone cannot be written.
            log.warning("closing the NATS connection: %r", exc)

    async def _drain(self, nc: NATS) -> None:
        """No new requests; those in hand answered; then the rest of the connection."""
        for subscription in self._served:
            await subscription.drain()
        await self.handlers.finish()
        await nc.drain()

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
