"""The resolver: ``<prefix>.v1.intercepted`` in, ``<prefix>.v1.enriched`` out.

It answers malformed requests itself with a typed error so the interceptor fails
closed at once instead of waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.msg import Msg
from prometheus_client import Counter, Histogram

from services.common.bus import BusService, watch_key
from services.common.contracts import (
    QUEUE_RESOLVER,
    ContractError,
    InterceptedRequest,
    RuleSetDocument,
    decode,
    encode,
    error_headers,
)
from services.common.ops import spawn
from services.resolver.enrich import location_of, understand
from services.resolver.settings import ResolverSettings

log = logging.getLogger(__name__)

EVENTS = Counter("tfw_resolver_events_total", "Requests enriched", ["action", "context"])
ERRORS = Counter("tfw_resolver_errors_total", "Requests answered with an error", ["code"])
LATENCY = Histogram(
    "tfw_resolver_enrich_seconds",
    "Time to enrich one request",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2),
)


class Resolver(BusService):
    name = "resolver"

    def __init__(self, settings: ResolverSettings) -> None:
        super().__init__(settings)
        self.settings: ResolverSettings = settings
        self.internal_tenants = frozenset(settings.internal_tenants)
        self._limit = asyncio.Semaphore(settings.max_in_flight)

    async def setup(self) -> None:
        assert self.nc is not None
        await self.nc.subscribe(
            self.subjects.intercepted, queue=QUEUE_RESOLVER, cb=self.on_intercepted
        )
        spawn(
            watch_key(self.nc, self.subjects.rules_bucket, self.subjects.rules_key, self.on_rules),
            "resolver-rules-watch",
        )

    def on_rules(self, value: bytes) -> None:
        document = decode(RuleSetDocument, value)
        if document.internal_tenants:
            self.internal_tenants = frozenset(t.lower() for t in document.internal_tenants)
            log.info("internal tenants from rule set %s", document.version)

    async def on_intercepted(self, msg: Msg) -> None:
        if not msg.reply:
            return
        async with self._limit:
            await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        assert self.nc is not None
        started = time.perf_counter()
        try:
            request = decode(InterceptedRequest, msg.data)
        except ContractError as exc:
            ERRORS.labels(exc.code).inc()
            log.warning("bad intercepted request: %s", exc)
            await self.nc.publish(msg.reply, b"", headers=error_headers(exc.code, exc.detail))
            return
        try:
            event, _parsed, _tokens = understand(request)
            event.location = location_of(event.actor, self.internal_tenants)
            event.resolve_ms = (time.perf_counter() - started) * 1000
            payload = encode(event)
        except Exception:
            ERRORS.labels("internal").inc()
            log.exception("enrichment failed", extra={"decision_id": request.id})
            await self.nc.publish(
                msg.reply, b"", headers=error_headers("internal", "resolver failed")
            )
            return
        EVENTS.labels(event.action.value, event.context.source.value).inc()
        LATENCY.observe(time.perf_counter() - started)
        await self.nc.publish(self.subjects.enriched, payload, reply=msg.reply)
