"""Building blocks for the resolver's tests: requests as a Teams client sends them,
tokens minted for accounts of the fixture organisation, and a resolver wired to the
Teams simulator (or to any transport) with an in-process store."""

from __future__ import annotations

import itertools
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from services.common.contracts import InterceptedRequest, Observation, new_decision_id
from services.resolver.context import Conversations
from services.resolver.observe import Learner
from services.resolver.people import People
from services.resolver.resolve import Resolution
from services.resolver.store import Store
from services.resolver.teams import TeamsClient
from services.resolver.tokens import TokenCipher, new_key
from tfw.sim.org import Account, Org
from tfw.sim.tokens import AUDIENCE_CHAT, AUDIENCE_SPACES, mint_bearer, mint_skypetoken

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
FIRM_EU = "6e2d4c88-1a7b-4b5e-8c3f-2d9e7a0b5c22"
_ids = itertools.count(1)


def account(org: Org, key: str) -> Account:
    return org.accounts[key]


def skype(acct: Account, lifetime_s: int = 3600) -> str:
    assert acct.oid
    return mint_skypetoken(acct.oid, acct.tenant.id, acct.tenant.region, lifetime_s)


def spaces(acct: Account, lifetime_s: int = 3600) -> str:
    assert acct.oid
    return mint_bearer(acct.oid, acct.tenant.id, acct.email or "", AUDIENCE_SPACES, lifetime_s)


def auth_headers(acct: Account, auth: str = "skypetoken") -> dict[str, str]:
    """Headers of a request carrying ``acct``'s credentials the way ``auth`` says."""
    assert acct.oid
    headers = {"x-ms-session-id": f"session-{acct.key}"}
    if auth in ("skypetoken", "both"):
        headers["authentication"] = f"skypetoken={skype(acct)}"
    if auth == "x-skypetoken":
        headers["x-skypetoken"] = skype(acct)
    if auth in ("bearer", "both"):
        bearer = mint_bearer(acct.oid, acct.tenant.id, acct.email or "", AUDIENCE_CHAT)
        headers["authorization"] = f"Bearer {bearer}"
    if auth == "garbage-token":
        headers["authentication"] = "skypetoken=not-a-token"
    return headers


def intercepted(
    method: str, url: str, headers: dict[str, str], body: Any = None
) -> InterceptedRequest:
    """An intercepted request as the interceptor would publish it."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = orjson.dumps(body)
    return InterceptedRequest(
        id=new_decision_id(),
        time=time.time(),
        interceptor="test",
        method=method,
        host=parts.hostname or "",
        path=path,
        headers=headers,
        body=raw,
        body_size=len(raw),
    )


def sign_in(acct: Account) -> Observation:
    """The token observation a client's sign-in traffic yields (its spaces token)."""
    return Observation(
        id=f"obs-{next(_ids)}",
        time=time.time(),
        interceptor="test",
        kind="token",
        host="teams.microsoft.com",
        path="/api/authsvc/v1.0/authz",
        request_headers={
            "authorization": f"Bearer {spaces(acct)}",
            "x-ms-session-id": f"session-{acct.key}",
        },
    )


def build(
    redirect: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    internal: tuple[str, ...] = (FIRM, FIRM_EU),
    store: Store | None = None,
    resolve_timeout_s: float = 5.0,
    max_retry_after_s: float = 5.0,
) -> Resolution:
    """A resolver with an in-process store, talking to the simulator or a transport."""
    store = store or Store(None, "unused")
    client = TeamsClient(
        redirect=redirect, timeout_s=5.0, transport=transport, max_retry_after_s=max_retry_after_s
    )
    cipher = TokenCipher(new_key())
    conversations = Conversations(store, client, cipher, 600.0)
    people = People(store, client, cipher, 18_000.0)
    learner = Learner(store, cipher, 600.0, 18_000.0, people)
    resolution = Resolution(store, conversations, people, learner, resolve_timeout_s)
    resolution.internal_tenants = frozenset(internal)
    return resolution
