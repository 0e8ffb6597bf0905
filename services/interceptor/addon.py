"""The interceptor addon: pick Teams traffic, ask for a verdict, apply it exactly.

It does not understand Teams: it picks traffic by host family and path shape
(:mod:`services.interceptor.scope`), forwards what the resolver needs, enforces the
answer, and passes tokens and lookup responses on as observations. Anything that goes
wrong on the way (no responder, a timeout, NATS down, an unreadable verdict, an
exception in this code, even after the request was changed) ends in the fail mode of
the request's action class, logged with the decision id and counted.

mitmproxy's addon manager logs an exception raised by a hook and lets the flow go on,
so every hook that enforces catches its own failures and denies.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.net.http import url
from nats.aio.client import Client as NATS

from services.common.contracts import (
    Decision,
    Subjects,
    Verdict,
    block_body,
    new_decision_id,
)
from services.interceptor.ask import (
    ALWAYS_BLOCK,
    Asker,
    FailMode,
    payload_cap,
    read_headers,
    request_packet,
)
from services.interceptor.metrics import (
    CONNECTIONS_DECRYPTED,
    CONNECTIONS_TUNNELLED,
    FAILURES,
    LATENCY,
    REQUESTS_DECIDED,
    REQUESTS_PASSED,
    REQUESTS_READ,
    REQUESTS_REFUSED,
    TLS_CLIENT_FAILURES,
    UNKNOWN_HOSTS,
    VERDICTS_ALLOW,
    VERDICTS_BLOCK,
)
from services.interceptor.observe import Observer, has_credentials
from services.interceptor.scope import (
    PASS,
    HostKind,
    Route,
    action_class,
    bare_host,
    is_teams_host,
    route,
    should_decrypt,
)
from services.interceptor.settings import InterceptorSettings

log = logging.getLogger(__name__)

DECISION_HEADER = "X-TeamsFirewall-Decision"
# A verdict may add headers, never rewrite routing, framing or credentials.
_PROTECTED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "authorization",
        "authentication",
        "x-skypetoken",
        "cookie",
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]{0,4096}$")
_MAX_UNKNOWN_HOSTS_LOGGED = 1000
_ROUTE = "tfw.route"
_ORIGIN = "tfw.origin"


class Interceptor:
    """mitmproxy addon; ``nc`` is set once the NATS connection is up."""

    def __init__(self, settings: InterceptorSettings, instance: str) -> None:
        self.settings = settings
        self.instance = instance
        self.subjects = Subjects(settings.subject_prefix)
        self.observer = Observer(
            self.subjects,
            instance,
            settings.observe_body_cap_bytes,
            settings.observe_queue,
            settings.token_reobserve_s,
        )
        self._nc: NATS | None = None
        self._asker: Asker | None = None
        self._unknown_hosts: set[str] = set()

    @property
    def nc(self) -> NATS | None:
        return self._nc

    @nc.setter
    def nc(self, value: NATS | None) -> None:
        self._nc = value
        self.observer.nc = value

    # --- configuration ----------------------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        """Refuse options that would let a controlled request go upstream undecided."""
        if "stream_large_bodies" in updated and getattr(ctx.options, "stream_large_bodies", None):
            # The HTTP layer switches a body without a length (chunked, HTTP/2) to
            # streaming while it is still arriving, after every hook has run, so a
            # controlled request would reach Teams before its verdict.
            raise exceptions.OptionsError(
                "stream_large_bodies cannot be used with the TeamsFirewall interceptor: "
                "controlled requests must be decided on their whole body"
            )

    # --- connections ------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """The open-proxy guard for CONNECT: only Teams hosts are tunnelled."""
        if self.settings.allow_only_teams and not is_teams_host(flow.request.host):
            self._refuse(flow, flow.request.host)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """Decrypt only the controlled and unknown Teams hosts; tunnel the rest.

        Both the SNI and the host the client asked to CONNECT to are checked, so a
        client cannot get a chat-service connection tunnelled by naming another host
        in one of them.
        """
        hosts = [data.client_hello.sni or ""]
        if data.context.server.address:
            hosts.append(str(data.context.server.address[0]))
        consumer = self.settings.consumer_hosts
        if self.settings.tls_passthrough and not any(
            should_decrypt(host, consumer) for host in hosts
        ):
            data.ignore_connection = True
            CONNECTIONS_TUNNELLED.inc()
            return
        CONNECTIONS_DECRYPTED.inc()

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """A client that does not trust the CA: an operator's problem, never a bypass."""
        TLS_CLIENT_FAILURES.inc()
        peer = data.context.client.peername
        sni = data.context.client.sni or "?"
        log.warning(
            "TLS handshake with client %s for %s failed (does it trust the proxy CA?): %s",
            peer[0] if peer else "?",
            sni,
            data.conn.error,
        )

    # --- requests -----------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Route the request once; a controlled request is never streamed upstream."""
        try:
            request = flow.request
            hosts = _hosts_of(request)
            if self.settings.allow_only_teams and not all(map(is_teams_host, hosts)):
                self._refuse(flow, request.pretty_host)
                return
            decided, host = self._route(request, hosts)
            flow.metadata[_ROUTE] = decided
            flow.metadata[_ORIGIN] = (host, request.path)
            if decided.decide:
                request.stream = False
            if decided.unknown_host:
                self._note_unknown_host(host)
        except Exception:
            # Routing is decided again in the request hook, which fails closed.
            log.exception("could not route a request to %s", flow.request.pretty_host)

    def _route(self, request: http.Request, hosts: list[str]) -> tuple[Route, str]:
        """Route on the Host header and on the connection's host: the stricter wins,
        so a request cannot dodge its decision by naming another host in its headers."""
        routes = [
            (
                route(
                    request.method,
                    host,
                    request.path,
                    self.settings.consumer_hosts,
                    self.settings.decide_reads,
                ),
                host,
            )
            for host in hosts
        ]
        return next((pair for pair in routes if pair[0].decide), routes[0])

    async def request(self, flow: http.HTTPFlow) -> None:
        """Decide a controlled request on its whole body, before anything goes upstream."""
        if flow.response is not None or flow.error is not None:
            return  # another addon, or the open-proxy guard, already answered
        decision_id = new_decision_id()
        try:
            await self._request(flow, decision_id)
        except Exception:
            log.exception("interceptor error", extra={"decision_id": decision_id})
            self._fail_safely(flow, decision_id, "internal", "internal error in the interceptor")

    async def _request(self, flow: http.HTTPFlow, decision_id: str) -> None:
        request = flow.request
        if _ROUTE in flow.metadata:
            decided: Route = flow.metadata[_ROUTE]
            host, path = flow.metadata[_ORIGIN]
        else:
            decided, host = self._route(request, _hosts_of(request))
            path = request.path
        seen = read_headers(request.headers)
        if decided.observe_token and self.settings.observe and has_credentials(seen):
            self.observer.offer_token(request.method, host, path, seen)
        _frame_body(request, seen)
        if not decided.decide:
            (REQUESTS_READ if decided.chat_service else REQUESTS_PASSED).inc()
            self._forwarded_for(flow, decided)
            return
        REQUESTS_DECIDED.inc()
        started = time.perf_counter()
        try:
            verdict = await self.ask(flow, decision_id, host, path, seen)
            LATENCY.observe(time.perf_counter() - started)
            self.apply(flow, verdict)
        except FailMode as failure:
            self.fail(flow, decision_id, failure.cause, failure.reason)
        except Exception:
            log.exception("interceptor error", extra={"decision_id": decision_id})
            self.fail(flow, decision_id, "internal", "internal error in the interceptor")
        if flow.response is None:  # allowed, or let through by an allow fail mode
            self._forwarded_for(flow, decided)

    def response(self, flow: http.HTTPFlow) -> None:
        """Tag allowed controlled responses with the decision id; observe lookups."""
        try:
            record: dict[str, Any] | None = flow.metadata.get("tfw")
            if record is not None and record.get("decision") == "block":
                return  # our own answer
            if record is not None and self.settings.decision_header and flow.response:
                flow.response.headers[DECISION_HEADER] = record["decision_id"]
            decided: Route = flow.metadata.get(_ROUTE, PASS)
            response = flow.response
            if (
                decided.observe_response
                and self.settings.observe
                and response is not None
                and 200 <= response.status_code < 300
            ):
                host, path = flow.metadata.get(_ORIGIN) or (
                    flow.request.pretty_host,
                    flow.request.path,
                )
                self.observer.offer_lookup(
                    flow.request.method, host, path, flow.request.headers, response
                )
        except Exception:
            # The client already has its answer; nothing here may take it away.
            log.exception("could not observe a response")

    async def ask(
        self,
        flow: http.HTTPFlow,
        decision_id: str,
        host: str,
        path: str,
        seen: Mapping[str, str],
    ) -> Verdict:
        """One request-reply on ``<prefix>.v1.intercepted``; every failure is FailMode.
        ``seen``: what :func:`read_headers` found on the request."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise FailMode("nats_down", "the decision service is unreachable")
        if self._asker is None or self._asker.nc is not nc:
            self._asker = Asker(nc)
        cap = payload_cap(self.settings.body_cap_bytes, nc)
        packet = request_packet(flow, decision_id, host, path, cap, self.instance, seen)
        return await self._asker.ask(
            self.subjects.intercepted, packet, self.settings.decide_timeout_s
        )

    # --- applying -----------------------------------------------------------------------

    def apply(self, flow: http.HTTPFlow, verdict: Verdict) -> None:
        """Block with a Teams-shaped error, or add the verdict's headers upstream."""
        flow.metadata["tfw"] = {
            "decision_id": verdict.decision_id,
            "decision": verdict.decision.value,
            "rules": [rule.name for rule in verdict.rules],
            "reason": verdict.reason,
        }
        if verdict.decision is Decision.BLOCK:
            status = verdict.status if 400 <= verdict.status <= 599 else self.settings.block_status
            reason = verdict.reason or ", ".join(rule.name for rule in verdict.rules) or "blocked"
            self._block(
                flow,
                verdict.decision_id,
                status,
                verdict.body or block_body(verdict.decision_id, reason, status),
            )
            VERDICTS_BLOCK.inc()
            return
        for name, value in verdict.headers.items():
            if not _HEADER_NAME.match(name) or name.lower() in _PROTECTED_HEADERS:
                raise FailMode("bad_verdict", "the verdict asks for a header it may not set")
            if not _HEADER_VALUE.match(value):
                raise FailMode("bad_verdict", "the verdict asks for an unsafe header value")
            flow.request.headers[name] = value
        VERDICTS_ALLOW.inc()

    def fail(self, flow: http.HTTPFlow, decision_id: str, cause: str, reason: str) -> None:
        """Apply the fail mode of the request's action class, logged and counted. A
        decision whose record was not stored blocks whatever the fail mode."""
        request = flow.request
        mode = "block"
        if cause not in ALWAYS_BLOCK:
            mode = self.settings.fail_mode_for(
                action_class(request.method, request.path, request.raw_content or b"")
            )
        FAILURES.labels(cause, mode).inc()
        log.error(
            "decision %s failed (%s: %s): fail mode %s",
            decision_id,
            cause,
            reason,
            mode,
            extra={"decision_id": decision_id},
        )
        flow.metadata["tfw"] = {
            "decision_id": decision_id,
            "decision": "block" if mode == "block" else "allow",
            "failure": cause,
            "reason": reason,
        }
        if mode == "block":
            status = self.settings.block_status
            body = block_body(decision_id, f"{reason}: fail closed", status)
            self._block(flow, decision_id, status, body)

    def _fail_safely(self, flow: http.HTTPFlow, decision_id: str, cause: str, reason: str) -> None:
        """``fail``, and should even that raise, a bare block: never an unseen pass."""
        try:
            self.fail(flow, decision_id, cause, reason)
        except Exception:
            log.exception("fail mode could not be applied", extra={"decision_id": decision_id})
            status = self.settings.block_status
            self._block(flow, decision_id, status, block_body(decision_id, "fail closed", status))

    def _block(self, flow: http.HTTPFlow, decision_id: str, status: int, body: bytes) -> None:
        flow.response = http.Response.make(
            status,
            body,
            {"Content-Type": "application/json; charset=utf-8", DECISION_HEADER: decision_id},
        )

    def _refuse(self, flow: http.HTTPFlow, host: str) -> None:
        REQUESTS_REFUSED.inc()
        log.warning("refused to proxy %s for %s: not a Teams host", host, _peer(flow))
        flow.response = http.Response.make(
            403,
            b"This proxy only forwards Microsoft Teams traffic.\n",
            {"Content-Type": "text/plain; charset=utf-8"},
        )

    def _forwarded_for(self, flow: http.HTTPFlow, decided: Route) -> None:
        if not self.settings.x_forwarded_for or decided.kind is HostKind.FOREIGN:
            return
        peer = flow.client_conn.peername
        if not peer:
            return
        previous = flow.request.headers.get("x-forwarded-for")
        flow.request.headers["X-Forwarded-For"] = f"{previous}, {peer[0]}" if previous else peer[0]

    def _note_unknown_host(self, host: str) -> None:
        UNKNOWN_HOSTS.inc()
        host = bare_host(host)
        if host in self._unknown_hosts or len(self._unknown_hosts) >= _MAX_UNKNOWN_HOSTS_LOGGED:
            return
        self._unknown_hosts.add(host)
        log.warning(
            "request to a Teams host the scope does not know: %s (decrypted; chat-service "
            "paths on it are decided)",
            host,
        )


# Longer Host headers are parsed afresh each time rather than kept.
_KEPT_AUTHORITY_CHARS = 255


@lru_cache(maxsize=1024)
def _authority_host(authority: str) -> str:
    return url.parse_authority(authority, check=False)[0]


def _pretty_host(request: http.Request) -> str:
    """``request.pretty_host``, with the parse of recent Host headers kept: a pure
    function of the header, and its IDNA checks showed in the warm-path profile."""
    authority = request.host_header
    if not authority:
        return request.host
    if len(authority) > _KEPT_AUTHORITY_CHARS:
        return _authority_host.__wrapped__(authority)
    return _authority_host(authority)


def _hosts_of(request: http.Request) -> list[str]:
    """The Host header's host, then the connection's host when it differs."""
    pretty = _pretty_host(request)  # parses the Host header: once
    hosts = [pretty]
    if request.host and bare_host(request.host) != bare_host(pretty):
        hosts.append(request.host)
    return hosts


def _frame_body(request: http.Request, seen: Mapping[str, str]) -> None:
    """Give a whole body that came without a length (HTTP/2, HTTP/3) a Content-Length;
    ``seen`` is what :func:`read_headers` found on the request.

    mitmproxy forwards such a request to an HTTP/1.1 server with neither a length nor
    chunked encoding, and the server then reads no body at all.
    """
    if request.stream or "content-length" in seen:
        return
    if "transfer-encoding" in seen or not request.raw_content:
        return
    request.headers["content-length"] = str(len(request.raw_content))


def _peer(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else "?"
