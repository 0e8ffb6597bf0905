"""The resolver: ``<prefix>.v1.intercepted`` in, ``<prefix>.v1.enriched`` out.

It also consumes ``<prefix>.v1.observed`` (queue group ``resolver``) to learn from the
client's own traffic, purges expired tokens on a timer, and answers malformed
requests itself with a typed error so the interceptor fails closed at once instead
of waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from nats.aio.msg import Msg
from prometheus_client import Counter, Histogram
from pymongo import AsyncMongoClient

from services.common.bus import BusService, watch_key
from services.common.contracts import (
    QUEUE_RESOLVER,
    Action,
    ContextSource,
    ContractError,
    InterceptedRequest,
    Observation,
    RuleSetDocument,
    decode,
    error_headers,
)
from services.common.ops import spawn
from services.decider.rules import compile_rules
from services.resolver.context import Conversations
from services.resolver.observe import Learner
from services.resolver.outbound import Outbound
from services.resolver.people import People
from services.resolver.resolve import Resolution
from services.resolver.settings import ResolverSettings
from services.resolver.store import Store
from services.resolver.teams import TeamsClient
from services.resolver.tokens import TokenCipher, new_key

log = logging.getLogger(__name__)

EVENTS = Counter("tfw_resolver_events_total", "Requests enriched", ["action", "context"])
# The children of EVENTS by (action, context source), bound on first use: a ``labels()``
# lookup per request showed in the resolver's profile.
_EVENTS_BY: dict[tuple[Action, ContextSource], Any] = {}
ERRORS = Counter("tfw_resolver_errors_total", "Requests answered with an error", ["code"])
OBSERVED = Counter("tfw_resolver_observations_total", "Observations learned from", ["outcome"])
LATENCY = Histogram(
    "tfw_resolver_enrich_seconds",
    "Time to enrich one request",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2),
)


def build_resolution(
    settings: ResolverSettings,
    mongo: AsyncMongoClient[dict[str, Any]] | None,
    client: TeamsClient,
) -> Resolution:
    """Assemble the store, lookups and learner from the settings."""
    key = settings.token_key_bytes()
    if key is None:
        # Settings refuse a missing key in production; here it is development.
        log.warning(
            "no TFW_TOKEN_KEY: tokens are sealed under an ephemeral key and lost on restart"
        )
        key = new_key()
    cipher = TokenCipher(key)
    store = Store(mongo, settings.database, settings.cache_max_entries)
    conversations = Conversations(
        store,
        client,
        cipher,
        settings.conversation_ttl_s,
        settings.member_page_size,
        settings.max_member_pages,
    )
    people = People(store, client, cipher, settings.user_ttl_s, settings.profile_batch_size)
    learner = Learner(store, cipher, settings.conversation_ttl_s, settings.user_ttl_s, people)
    resolution = Resolution(store, conversations, people, learner, settings.resolve_timeout_s)
    resolution.internal_tenants = frozenset(t.lower() for t in settings.internal_tenants)
    return resolution


class Resolver(BusService):
    name = "resolver"

    def __init__(self, settings: ResolverSettings) -> None:
        super().__init__(settings, settings.max_in_flight)
        self.settings: ResolverSettings = settings
        self.mongo: AsyncMongoClient[dict[str, Any]] | None = None
        if settings.mongodb_uri:
            timeout_ms = int(settings.mongo_timeout_s * 1000)
            self.mongo = AsyncMongoClient(
                settings.mongodb_uri,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                socketTimeoutMS=timeout_ms,
                tz_aware=True,
            )
        else:
            log.warning("no TFW_MONGODB_URI: the cache is this process's only")
        self.client = TeamsClient(
            redirect=settings.teams_redirect,
            timeout_s=settings.lookup_timeout_s,
            concurrency=settings.lookup_concurrency,
            max_retries=settings.max_retries,
            max_retry_after_s=settings.max_retry_after_s,
            enabled=settings.lookups_enabled,
        )
        if not settings.lookups_enabled:
            log.warning("Teams lookups are off: context comes from the cache and observations")
        self.resolution = build_resolution(settings, self.mongo, self.client)
        self.outbound = Outbound()
        self._tasks: list[asyncio.Task[Any]] = []
        # Ready only once subscribed: connected alone would take requests nobody hears.
        self._subscribed = False
        self.health.add_check("subscribed", lambda: self._subscribed)

    @property
    def internal_tenants(self) -> frozenset[str]:
        return self.resolution.internal_tenants

    async def setup(self) -> None:
        assert self.nc is not None
        self._tasks.append(spawn(self.ensure_indexes(), "resolver-indexes"))
        await self.serve(self.subjects.intercepted, QUEUE_RESOLVER, self.on_intercepted)
        await self.nc.subscribe(self.subjects.observed, queue=QUEUE_RESOLVER, cb=self.on_observed)
        self._tasks.append(
            spawn(
                watch_key(
                    self.nc, self.subjects.rules_bucket, self.subjects.rules_key, self.on_rules
                ),
                "resolver-rules-watch",
            )
        )
        self._tasks.append(spawn(self.purge_tokens(), "resolver-token-purge"))
        self._subscribed = True

    async def ensure_indexes(self) -> None:
        """Create the TTL indexes; without them the store still works, only unswept."""
        try:
            await self.resolution.store.ensure_indexes()
        except Exception as exc:
            log.warning("could not create the resolver's indexes: %s", exc)

    async def teardown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.client.close()
        if self.mongo is not None:
            await self.mongo.close()

    def on_rules(self, value: bytes) -> None:
        """Take the internal tenants of a pushed rule set, only if its rules compile.

        The decider refuses a rule set that does not compile and keeps the previous
        one; taking the tenants of such a value here would change every location
        behind its back (an edit from abroad counted as internal). A bad value raises,
        and the watcher keeps the previous tenants.
        """
        document = decode(RuleSetDocument, value)
        rules = compile_rules(document.source)
        if rules.internal_tenants:
            tenants = frozenset(t.lower() for t in rules.internal_tenants)
            self.resolution.internal_tenants = tenants
            log.info("internal tenants from rule set %s", rules.version)

    async def purge_tokens(self) -> None:
        """Drop expired tokens every ``token_purge_interval_s``."""
        while True:
            await asyncio.sleep(self.settings.token_purge_interval_s)
            try:
                purged = await self.resolution.store.purge_tokens()
                if purged:
                    log.info("purged %d expired tokens", purged)
            except Exception:
                log.exception("token purge failed; retrying next interval")

    async def on_observed(self, msg: Msg) -> None:
        try:
            observation = decode(Observation, msg.data)
            outcome = await self.resolution.learner.learn(observation)
        except ContractError as exc:
            OBSERVED.labels("malformed").inc()
            log.warning("bad observation: %s", exc)
            return
        except Exception:
            OBSERVED.labels("error").inc()
            log.exception("learning from an observation failed")
            return
        OBSERVED.labels(outcome.split(":")[0]).inc()
        log.debug("observation %s: %s", observation.id, outcome)

    async def on_intercepted(self, msg: Msg) -> None:
        if not msg.reply:
            return
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
            event = await self.resolution.enrich(request)
            payload = self.outbound.encode(event)
            too_large = bool(self.nc.max_payload) and len(payload) > self.nc.max_payload
        except Exception:
            ERRORS.labels("internal").inc()
            log.exception("enrichment failed", extra={"decision_id": request.id})
            await self.nc.publish(
                msg.reply, b"", headers=error_headers("internal", "resolver failed")
            )
            return
        if too_large:
            # A conversation so large its event exceeds the server's max_payload: say so
            # at once (the interceptor applies its fail mode) instead of letting the
            # interceptor wait out its timeout.
            ERRORS.labels("too_large").inc()
            log.error(
                "event of %d participants is %d bytes, over NATS max_payload (%d): "
                "raise max_payload",
                len(event.participants),
                len(payload),
                self.nc.max_payload,
                extra={"decision_id": request.id},
            )
            detail = "the conversation is too large to send to the decider"
            await self.nc.publish(msg.reply, b"", headers=error_headers("too_large", detail))
            return
        key = (event.action, event.context.source)
        counter = _EVENTS_BY.get(key)
        if counter is None:
            counter = _EVENTS_BY[key] = EVENTS.labels(key[0].value, key[1].value)
        counter.inc()
        LATENCY.observe(time.perf_counter() - started)
        await self.nc.publish(self.subjects.enriched, payload, reply=msg.reply)
