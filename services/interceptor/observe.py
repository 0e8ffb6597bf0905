"""Passive learning: tokens and lookup responses seen on the wire, for the resolver.

The client's path only ever does :meth:`Observer.offer_token` or
:meth:`Observer.offer_lookup`: a non-blocking put on a bounded queue (a full queue
drops the observation and counts it). One background task encodes and publishes on
``<prefix>.v1.observed``. Observations carry tokens: only the resolver may subscribe.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from mitmproxy import http
from nats.aio.client import Client as NATS

from services.common.contracts import Observation, Subjects, encode, new_decision_id
from services.interceptor.ask import payload_cap
from services.interceptor.metrics import OBSERVATIONS

log = logging.getLogger(__name__)

CREDENTIAL_HEADERS = ("authentication", "x-skypetoken", "authorization")
OBSERVED_HEADERS = (*CREDENTIAL_HEADERS, "x-ms-session-id", "x-ms-client-version")
_MAX_REMEMBERED_TOKENS = 10_000


def credential_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's credential and session headers, lower-case names."""
    return {name: headers[name] for name in OBSERVED_HEADERS if name in headers}


def has_credentials(headers: Mapping[str, str]) -> bool:
    return any(name in headers for name in CREDENTIAL_HEADERS)


@dataclass(slots=True)
class _Pending:
    kind: str
    method: str
    host: str
    path: str
    headers: dict[str, str]
    response: http.Response | None = None
    seen: float = field(default_factory=time.time)


class Observer:
    """Queues observations from the proxy hooks and publishes them in the background."""

    def __init__(
        self,
        subjects: Subjects,
        instance: str,
        body_cap: int,
        queue_size: int,
        token_reobserve_s: float,
    ) -> None:
        self.subjects = subjects
        self.instance = instance
        self.body_cap = body_cap
        self.token_reobserve_s = token_reobserve_s
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self.nc: NATS | None = None
        self._tokens_seen: dict[str, float] = {}

    def offer_token(self, method: str, host: str, path: str, headers: Mapping[str, str]) -> None:
        """Queue the credentials of a request, unless the same ones went out recently.
        ``headers``: the request's, or those :func:`~services.interceptor.ask.read_headers`
        found on it."""
        selected = credential_headers(headers)
        fingerprint = hashlib.sha256(
            "\n".join(selected.get(name, "") for name in CREDENTIAL_HEADERS).encode()
        ).hexdigest()
        now = time.monotonic()
        last = self._tokens_seen.get(fingerprint)
        if last is not None and now - last < self.token_reobserve_s:
            return
        if len(self._tokens_seen) >= _MAX_REMEMBERED_TOKENS:
            self._tokens_seen.clear()
        self._tokens_seen[fingerprint] = now
        self._offer(_Pending("token", method, host, path, selected))

    def offer_lookup(
        self, method: str, host: str, path: str, headers: http.Headers, response: http.Response
    ) -> None:
        """Queue a lookup response the client received (authz, thread, members …)."""
        self._offer(_Pending("lookup", method, host, path, credential_headers(headers), response))

    def _offer(self, pending: _Pending) -> None:
        try:
            self.queue.put_nowait(pending)
        except asyncio.QueueFull:
            OBSERVATIONS.labels(pending.kind, "dropped").inc()

    def build(self, pending: _Pending) -> Observation:
        """The Observation for a queued item, its body cut to fit the cap and NATS."""
        body = b""
        status = None
        truncated = False
        if pending.response is not None:
            status = pending.response.status_code
            body = pending.response.get_content(strict=False) or b""
            cap = payload_cap(self.body_cap, self.nc)
            truncated = len(body) > cap
            body = body[: max(cap, 0)]
        return Observation(
            id=new_decision_id(),
            time=pending.seen,
            interceptor=self.instance,
            kind=pending.kind,
            method=pending.method,
            host=pending.host,
            path=pending.path,
            request_headers=pending.headers,
            status=status,
            response_body=body,
            response_truncated=truncated,
        )

    async def run(self) -> None:
        """Publish queued observations for ever; one bad item never stops the loop."""
        while True:
            pending = await self.queue.get()
            try:
                await self.publish(pending)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                OBSERVATIONS.labels(pending.kind, "error").inc()
                log.warning(
                    "observation of %s %s not published: %s",
                    pending.kind,
                    pending.path.split("?", 1)[0],
                    type(exc).__name__,
                )

    async def publish(self, pending: _Pending) -> None:
        if self.nc is None or self.nc.is_closed:
            OBSERVATIONS.labels(pending.kind, "dropped").inc()
            return
        payload = encode(self.build(pending))
        if self.nc.max_payload and len(payload) > self.nc.max_payload:
            OBSERVATIONS.labels(pending.kind, "too_large").inc()
            return
        await self.nc.publish(self.subjects.observed, payload)
        OBSERVATIONS.labels(pending.kind, "published").inc()
