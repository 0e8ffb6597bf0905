"""The HTTP client the resolver asks Teams with, on a user's behalf.

Every call has a timeout, concurrency is bounded, a 429 is retried after its
``Retry-After`` (within a ceiling), a 5xx after a short backoff, and every failure
becomes a :class:`LookupFailed` with a reason that is safe to record. A 401 is a
:class:`TokenRejected` so the caller can try another token of the same user.

In tests and demos, :func:`teams_url` sends every lookup to the Teams simulator.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from prometheus_client import Counter

log = logging.getLogger(__name__)

CALLS = Counter("tfw_resolver_teams_calls_total", "Lookups made to Teams", ["kind", "status"])
_BACKOFF_S = (0.1, 0.3, 0.9)


class LookupFailed(Exception):
    """A lookup that gave no usable answer; ``reason`` is safe to record."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TokenRejected(LookupFailed):
    """Teams answered 401: this token is expired or revoked."""


class NotFound(LookupFailed):
    """Teams answered 404: no such conversation or user (or not visible to the caller)."""


def teams_url(url: str, redirect: str | None) -> str:
    """Where a request for ``url`` really goes.

    Without a redirect, the URL itself. With ``redirect=http://127.0.0.1:PORT``,
    ``https://{host}{path}`` becomes ``http://127.0.0.1:PORT/_host/{host}{path}``; a URL
    already pointing at the redirect (a ``nextLink`` the simulator wrote) is kept.
    """
    if not redirect:
        return url
    base = redirect.rstrip("/")
    if url.startswith(base + "/"):
        return url
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{base}/_host/{parts.netloc}{parts.path or '/'}{query}"


def chatsvc_auth(kind: str, raw: str) -> dict[str, str]:
    """The header a chat-service lookup carries for a skypetoken or an IC3 bearer."""
    if kind == "skypetoken":
        return {"Authentication": f"skypetoken={raw}"}
    return {"Authorization": f"Bearer {raw}"}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class TeamsClient:
    """Bounded, timed, retrying JSON calls to Teams; counts its calls by kind."""

    def __init__(
        self,
        redirect: str | None = None,
        timeout_s: float = 2.0,
        concurrency: int = 16,
        max_retries: int = 2,
        max_retry_after_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        enabled: bool = True,
    ) -> None:
        self.redirect = redirect
        self.enabled = enabled
        self.max_retries = max_retries
        self.max_retry_after_s = max_retry_after_s
        self.calls: Tally[str] = Tally()
        self._limit = asyncio.Semaphore(concurrency)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "TeamsFirewall-resolver"},
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def get(self, kind: str, url: str, headers: dict[str, str]) -> Any:
        """GET a JSON document."""
        return await self._call(kind, "GET", url, headers, None)

    async def post(self, kind: str, url: str, headers: dict[str, str], body: Any) -> Any:
        """POST a JSON body and return the JSON answer."""
        return await self._call(kind, "POST", url, headers, orjson.dumps(body))

    async def _call(
        self, kind: str, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> Any:
        target = teams_url(url, self.redirect)
        send_headers = dict(headers)
        if body is not None:
            send_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            response = await self._send(kind, method, target, send_headers, body)
            status = response.status_code
            CALLS.labels(kind, str(status)).inc()
            if status < 300:
                return self._json(kind, response)
            if status == 401:
                raise TokenRejected(f"Teams rejected the token for {kind} (401)", status)
            if status == 404:
                raise NotFound(f"Teams knows no such {kind} (404)", status)
            if status == 429 or status >= 500:
                wait = _retry_after(response) if status == 429 else None
                if wait is None:
                    wait = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                if attempt >= self.max_retries or wait > self.max_retry_after_s:
                    raise LookupFailed(f"Teams answered {status} to {kind} lookups", status)
                log.warning(
                    "Teams answered %d to a %s lookup; retrying in %.1fs", status, kind, wait
                )
                attempt += 1
                await asyncio.sleep(wait)
                continue
            raise LookupFailed(f"Teams answered {status} to a {kind} lookup", status)

    async def _send(
        self, kind: str, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> httpx.Response:
        if not self.enabled:
            raise LookupFailed("Teams lookups are off (development without TFW_TEAMS_REDIRECT)")
        self.calls[kind] += 1
        async with self._limit:
            try:
                return await self._http.request(method, url, headers=headers, content=body)
            except httpx.TimeoutException:
                CALLS.labels(kind, "timeout").inc()
                raise LookupFailed(f"Teams did not answer a {kind} lookup in time") from None
            except httpx.HTTPError as exc:
                CALLS.labels(kind, "error").inc()
                raise LookupFailed(
                    f"Teams unreachable for a {kind} lookup ({type(exc).__name__})"
                ) from None

    @staticmethod
    def _json(kind: str, response: httpx.Response) -> Any:
        if not response.content.strip():
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise LookupFailed(f"Teams answered a {kind} lookup with something not JSON") from None
