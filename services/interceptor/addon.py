"""The interceptor addon: pack a controlled request, ask for a verdict, apply it.

It does not understand Teams: it picks traffic by host and path, forwards what the
resolver needs, and enforces the answer. Anything that goes wrong on the way (no
responder, a timeout, NATS down, an unreadable verdict, an exception in this code)
ends in the configured fail mode, logged with the decision id and counted.
"""

from __future__ import annotations

import logging
import time

import nats.errors
from mitmproxy import http
from nats.aio.client import Client as NATS
from prometheus_client import Counter, Histogram

from services.common.contracts import (
    ERROR_CODE_HEADER,
    ContractError,
    Decision,
    InterceptedRequest,
    Subjects,
    Verdict,
    block_body,
    decode,
    encode,
    new_decision_id,
)
from services.interceptor.scope import is_controlled
from services.interceptor.settings import InterceptorSettings

log = logging.getLogger(__name__)

FORWARDED_HEADERS = frozenset(
    {
        "authentication",
        "x-skypetoken",
        "authorization",
        "x-ms-session-id",
        "x-ms-client-version",
        "x-ms-client-type",
        "x-ms-client-caller",
        "content-type",
        "user-agent",
        "referer",
        "behavioroverride",
    }
)

REQUESTS = Counter("tfw_interceptor_requests_total", "Requests seen", ["scope"])
VERDICTS = Counter("tfw_interceptor_verdicts_total", "Verdicts applied", ["decision"])
FAILURES = Counter("tfw_interceptor_failures_total", "Fail-mode decisions", ["cause"])
LATENCY = Histogram(
    "tfw_interceptor_decision_seconds",
    "Time from request to verdict",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 2, 5),
)


class Interceptor:
    """mitmproxy addon; ``nc`` is set once the NATS connection is up."""

    def __init__(self, settings: InterceptorSettings, instance: str) -> None:
        self.settings = settings
        self.instance = instance
        self.subjects = Subjects(settings.subject_prefix)
        self.nc: NATS | None = None

    def request_packet(self, flow: http.HTTPFlow, decision_id: str) -> InterceptedRequest:
        request = flow.request
        body = request.raw_content or b""
        cap = self.settings.body_cap_bytes
        headers = {
            name.lower(): value
            for name, value in request.headers.items()
            if name.lower() in FORWARDED_HEADERS
        }
        return InterceptedRequest(
            id=decision_id,
            time=time.time(),
            interceptor=self.instance,
            client_ip=flow.client_conn.peername[0] if flow.client_conn.peername else "",
            method=request.method,
            scheme=request.scheme,
            host=request.pretty_host,
            port=request.port,
            path=request.path,
            http_version=request.http_version,
            headers=headers,
            body=body[:cap],
            body_size=len(body),
            body_truncated=len(body) > cap,
        )

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return  # another addon already answered
        if not is_controlled(flow.request.pretty_host, flow.request.path):
            REQUESTS.labels("passed").inc()
            return
        REQUESTS.labels("controlled").inc()
        decision_id = new_decision_id()
        started = time.perf_counter()
        try:
            verdict = await self.ask(flow, decision_id)
        except _FailMode as failure:
            self.fail(flow, decision_id, failure.cause, failure.reason)
            return
        except Exception:
            log.exception("interceptor error", extra={"decision_id": decision_id})
            self.fail(flow, decision_id, "internal", "internal error in the interceptor")
            return
        LATENCY.observe(time.perf_counter() - started)
        self.apply(flow, verdict)

    async def ask(self, flow: http.HTTPFlow, decision_id: str) -> Verdict:
        if self.nc is None or not self.nc.is_connected:
            raise _FailMode("nats_down", "the decision service is unreachable")
        payload = encode(self.request_packet(flow, decision_id))
        try:
            reply = await self.nc.request(
                self.subjects.intercepted, payload, timeout=self.settings.decide_timeout_s
            )
        except nats.errors.NoRespondersError:
            raise _FailMode("no_responders", "no decision service is running") from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise _FailMode("timeout", "no verdict within the timeout") from None
        except nats.errors.Error as exc:
            raise _FailMode("nats_error", f"bus error: {type(exc).__name__}") from None
        if reply.headers and ERROR_CODE_HEADER in reply.headers:
            code = reply.headers[ERROR_CODE_HEADER]
            raise _FailMode(f"remote_{code}", f"the decision service reported {code}")
        try:
            verdict = decode(Verdict, reply.data)
        except ContractError as exc:
            raise _FailMode("bad_verdict", f"unreadable verdict ({exc.code})") from None
        if verdict.decision_id != decision_id:
            raise _FailMode("bad_verdict", "verdict for another request")
        return verdict

    def apply(self, flow: http.HTTPFlow, verdict: Verdict) -> None:
        VERDICTS.labels(verdict.decision.value).inc()
        flow.metadata["tfw"] = {
            "decision_id": verdict.decision_id,
            "decision": verdict.decision.value,
            "rules": [rule.name for rule in verdict.rules],
            "reason": verdict.reason,
        }
        if verdict.decision is Decision.BLOCK:
            flow.response = http.Response.make(
                verdict.status,
                verdict.body
                or block_body(verdict.decision_id, verdict.reason or "", verdict.status),
                {
                    "Content-Type": "application/json",
                    "X-TeamsFirewall-Decision": verdict.decision_id,
                },
            )
            return
        for name, value in verdict.headers.items():
            flow.request.headers[name] = value

    def fail(self, flow: http.HTTPFlow, decision_id: str, cause: str, reason: str) -> None:
        FAILURES.labels(cause).inc()
        mode = self.settings.fail_mode
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
            text = f"{reason}: fail closed"
            flow.response = http.Response.make(
                status,
                block_body(decision_id, text, status),
                {"Content-Type": "application/json", "X-TeamsFirewall-Decision": decision_id},
            )


class _FailMode(Exception):
    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason
