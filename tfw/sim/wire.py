"""The simulated service's request, response and error types, shared by the routes
and the handlers of each Teams service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tfw.sim.org import Account, Conversation


@dataclass(frozen=True, slots=True)
class SimRequest:
    method: str
    host: str
    path: str  # path and query, as sent (still URL-encoded)
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass(slots=True)
class SimResponse:
    status: int
    body: Any = None  # JSON-able, or bytes as they are
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return b"" if self.body is None and self.status == 204 else orjson.dumps(self.body)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request's token says it is; ``account`` is None for a stranger."""

    oid: str
    tenant_id: str
    account: Account | None

    @property
    def mri(self) -> str:
        return f"8:orgid:{self.oid}"


@dataclass(slots=True)
class Call:
    """One routed request, as a handler sees it."""

    caller: Caller
    request: SimRequest
    base: str  # the front door's prefix, for absolute links (``https://host/api/chatsvc/r``)
    rest: list[str]  # decoded path parameters: conversation id, message id, MRI, email
    query: dict[str, str]
    conversation: Conversation | None = None

    @property
    def thread(self) -> Conversation:
        assert self.conversation is not None
        return self.conversation


class Refused(Exception):
    """An error answer, shaped like Teams' own (``{errorCode, message}``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        body = {"errorCode": status, "message": message}
        self.response = SimResponse(status, body, headers or {})


@dataclass
class Switches:
    """Behaviours tests turn on: rate limiting, the bare-array quirk, hidden threads."""

    rate_limited: int = 0  # how many more requests get 429
    rate_limit_endpoint: str | None = None  # only this endpoint (prefix), or any
    retry_after_s: int = 1
    federated_bare_array: bool = False
    federation_blocked: bool = False
    hidden_threads: set[str] = field(default_factory=set)


def json_body(request: SimRequest) -> Any:
    """The request body parsed as JSON (None when empty); 400 when it is not JSON."""
    if not request.body:
        return None
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise Refused(400, "Malformed JSON in the request body") from None
