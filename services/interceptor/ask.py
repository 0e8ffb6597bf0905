"""Asking for a verdict: the packet the resolver reads, and one request-reply on
``<prefix>.v1.intercepted`` (with the record's acknowledgement beside the verdict)
whose every failure is a :class:`FailMode`."""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib
from collections.abc import Mapping

import nats.errors
import orjson
from mitmproxy import http
from nats.aio.client import NO_RESPONDERS_STATUS
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import Header

from services.common.contracts import (
    ERROR_CODE_HEADER,
    RECORD_ACK_HEADER,
    SCHEMA_VERSION,
    ContractError,
    InterceptedRequest,
    Verdict,
    assemble,
    decode,
    encode,
)
from services.interceptor.metrics import RECORD_WAIT
from services.interceptor.scope import bare_host

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
# Room left in a NATS message for everything but the body (tokens are a few KiB).
ENVELOPE_BYTES = 32 * 1024


class FailMode(Exception):
    """No verdict could be had; ``cause`` is a metric label, ``reason`` safe to show."""

    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


def payload_cap(cap: int, nc: NATS | None) -> int:
    """``cap`` lowered so that many body bytes, base64 in JSON, fit NATS's max payload."""
    if nc is not None and nc.max_payload:
        cap = min(cap, (nc.max_payload - ENVELOPE_BYTES) * 3 // 4)
    return max(cap, 0)


# zlib window bits: gzip, then raw deflate and zlib-wrapped deflate (both seen as
# "deflate" in the wild).
_DECODERS = {"gzip": (31,), "x-gzip": (31,), "deflate": (15, -15)}


def readable_body(
    request: http.Request, cap: int, encoding: str | None = None
) -> tuple[bytes, bool]:
    """The request body as the resolver must read it: decoded when the client sent it
    compressed, never more than ``cap`` bytes (a compression bomb is cut, not expanded),
    and whether it was cut. An encoding that cannot be read is a FailMode: a body the
    rules cannot see is never waved through as if it had been read."""
    raw = request.raw_content or b""
    if encoding is None:
        encoding = request.headers.get("content-encoding", "")
    encoding = encoding.strip().lower()
    if not raw or encoding in ("", "identity"):
        return raw[:cap], len(raw) > cap
    for wbits in _DECODERS.get(encoding, ()):
        try:
            decoder = zlib.decompressobj(wbits)
            body = decoder.decompress(raw, cap + 1)
        except zlib.error:
            continue
        return body[:cap], len(body) > cap
    raise FailMode("unreadable_body", f"the request body is {encoding[:32]}-encoded")


# Headers the interceptor itself reads on the way: how the body is framed and encoded.
FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_READ_HEADERS = FORWARDED_HEADERS | FRAMING_HEADERS


def read_headers(headers: http.Headers) -> dict[str, str]:
    """The headers the resolver reads and the framing headers, lower-case names,
    repeated ones joined with ``", "`` as mitmproxy's ``Headers`` joins them.

    One pass over the raw fields: looking each name up through ``Headers`` scans every
    field per name, which showed in the interceptor's warm-path profile.
    """
    selected: dict[str, str] = {}
    for raw_name, raw_value in headers.fields:
        # Lower-cased as bytes, as ``Headers`` compares names: ASCII letters only.
        name = raw_name.lower().decode("utf-8", "surrogateescape")
        if name not in _READ_HEADERS:
            continue
        value = raw_value.decode("utf-8", "surrogateescape")
        selected[name] = f"{selected[name]}, {value}" if name in selected else value
    return selected


def forwarded_headers(seen: Mapping[str, str]) -> dict[str, str]:
    """The headers the resolver reads, of those :func:`read_headers` found."""
    return {name: value for name, value in seen.items() if name in FORWARDED_HEADERS}


def request_packet(
    flow: http.HTTPFlow,
    decision_id: str,
    host: str,
    path: str,
    cap: int,
    interceptor: str,
    seen: Mapping[str, str] | None = None,
) -> InterceptedRequest:
    """What the resolver reads: method, real host and path, the headers that matter,
    the body up to ``cap`` (flagged when cut) and the client's address. ``seen`` is
    what :func:`read_headers` found on the request, when the caller has it."""
    request = flow.request
    if seen is None:
        seen = read_headers(request.headers)
    body, truncated = readable_body(request, cap, seen.get("content-encoding", ""))
    headers = forwarded_headers(seen)
    peer = flow.client_conn.peername
    # Assembled, not validated: every value is of its field's type already, and the
    # resolver validates the packet when it decodes it.
    return assemble(
        InterceptedRequest,
        {
            "schema_version": SCHEMA_VERSION,
            "id": decision_id,
            "time": time.time(),
            "interceptor": interceptor,
            "client_ip": str(peer[0]) if peer else "",
            "method": request.method,
            "scheme": request.scheme,
            "host": bare_host(host),
            "port": request.port,
            "path": path,
            "http_version": request.http_version,
            "headers": headers,
            "body": body,
            "body_size": len(request.raw_content or b""),
            "body_truncated": truncated,
            "record_ack": True,
        },
    )


RECORD_FAILED = "the decision could not be recorded"
# Failures that block whatever the fail mode: a verdict came (perhaps a block), but its
# record was not stored, and no action passes unrecorded.
ALWAYS_BLOCK = frozenset({"record_failed", "record_timeout"})


class Asker:
    """Verdicts by request-reply on one wildcard inbox, where a request may get two
    answers: the verdict and, when the verdict carries ``Tfw-Record-Ack``, JetStream's
    acknowledgement of its decision record. A verdict takes effect only once its
    record is acknowledged; a refused, missing or late acknowledgement is a
    :class:`FailMode`, as is anything but a verdict for this very request."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = nc.new_inbox()  # random: the tokens below need not be
        self._tokens = itertools.count(1)
        self._waiting: dict[str, asyncio.Queue[Msg]] = {}
        self._subscribed = False

    async def ask(self, subject: str, packet: InterceptedRequest, timeout_s: float) -> Verdict:
        payload = encode(packet)
        if self.nc.max_payload and len(payload) > self.nc.max_payload:
            raise FailMode("too_large", "the request headers are too large to decide")
        token = str(next(self._tokens))
        replies: asyncio.Queue[Msg] = asyncio.Queue()
        self._waiting[token] = replies
        verdict: Verdict | None = None
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                if not self._subscribed:
                    # Set first: a second request asking meanwhile must not subscribe
                    # again (every answer would come twice). nats-py queues the SUB
                    # before it first yields, so no request's PUB can overtake it.
                    self._subscribed = True
                    try:
                        await self.nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)
                    except BaseException:
                        self._subscribed = False
                        raise
                await self.nc.publish(subject, payload, reply=f"{self._prefix}.{token}")
                # nats-py swallows a cancellation that lands while it waits to flush its
                # buffer (more than pending_size queued): then the timeout has fired but
                # would never interrupt the waits below.
                if deadline.expired():
                    raise TimeoutError
                answer = await replies.get()
                early_ack = None
                if _looks_like_ack(answer):  # across a cluster it may overtake the verdict
                    early_ack, answer = answer, await replies.get()
                verdict = _verdict_of(answer, packet.id)
                stream = answer.headers.get(RECORD_ACK_HEADER) if answer.headers else None
                if stream:
                    arrived = time.perf_counter()
                    _check_record_ack(early_ack or await replies.get(), stream)
                    RECORD_WAIT.observe(time.perf_counter() - arrived)
        except TimeoutError:
            if verdict is not None:
                raise FailMode("record_timeout", RECORD_FAILED) from None
            raise FailMode("timeout", "no verdict within the timeout") from None
        except nats.errors.Error as exc:
            raise FailMode("nats_error", f"bus error: {type(exc).__name__}") from None
        finally:
            del self._waiting[token]
        return verdict

    async def _on_reply(self, msg: Msg) -> None:
        replies = self._waiting.get(msg.subject[len(self._prefix) + 1 :])
        if replies is not None:  # else: late, for a request that gave up
            replies.put_nowait(msg)


def _looks_like_ack(answer: Msg) -> bool:
    """JetStream's acknowledgement (or refusal) of a publish, not a verdict."""
    return not answer.headers and answer.data.startswith((b'{"stream"', b'{"error"'))


def _verdict_of(answer: Msg, decision_id: str) -> Verdict:
    headers = answer.headers or {}
    if headers.get(Header.STATUS) == NO_RESPONDERS_STATUS:
        raise FailMode("no_responders", "no decision service is running")
    if ERROR_CODE_HEADER in headers:
        code = headers[ERROR_CODE_HEADER][:64]
        raise FailMode("remote_error", f"the decision service reported {code}")
    try:
        verdict = decode(Verdict, answer.data)
    except ContractError as exc:
        raise FailMode("bad_verdict", f"unreadable verdict ({exc.code})") from None
    if verdict.decision_id != decision_id:
        raise FailMode("bad_verdict", "verdict for another request")
    return verdict


def _check_record_ack(answer: Msg, stream: str) -> None:
    """JetStream's answer to the record's publish: stored in ``stream``, or a failure
    (a status such as 503 when the stream is missing, or an error object)."""
    if answer.headers and Header.STATUS in answer.headers:
        raise FailMode("record_failed", RECORD_FAILED)
    try:
        ack = orjson.loads(answer.data)
    except orjson.JSONDecodeError:
        raise FailMode("record_failed", RECORD_FAILED) from None
    if not isinstance(ack, dict) or ack.get("stream") != stream or "error" in ack:
        raise FailMode("record_failed", RECORD_FAILED)
    if not isinstance(ack.get("seq"), int):
        raise FailMode("record_failed", RECORD_FAILED)
