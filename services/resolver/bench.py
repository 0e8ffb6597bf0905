"""Resolver benchmark: cold resolve of a large team, warm enrich latency.

Runs the resolution in-process against the Teams simulator (``tfw.sim.teams``) on
127.0.0.1 with an in-process store, and prints:

- the cold resolve of the largest team of the organisation: calls by kind, wall time;
- warm enrich latency (p50/p99) for a small chat and for the large team, as the
  resolver spends it per request (parse, credentials, cache, participants), and the
  cost of encoding the event for the bus.

    python -m services.resolver.bench [--org PATH] [--warm N] [--mongodb-uri URI]

With ``--mongodb-uri`` the store writes through to that MongoDB (a scratch database,
dropped at the end), as every replica does in production.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
from pymongo import AsyncMongoClient

from services.common.contracts import InterceptedRequest, Observation, new_decision_id
from services.resolver.context import Conversations
from services.resolver.observe import Learner
from services.resolver.outbound import Outbound
from services.resolver.people import People
from services.resolver.resolve import Resolution
from services.resolver.store import Store
from services.resolver.teams import TeamsClient
from services.resolver.tokens import TokenCipher, new_key
from tfw.sim.org import Account, Org, load_org
from tfw.sim.teams import TeamsSimulator
from tfw.sim.tokens import AUDIENCE_SPACES, mint_bearer, mint_skypetoken

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ORGS = (
    ROOT.parent / "shared" / "cases" / "org.yaml",
    ROOT / "tfw" / "demo_data" / "org.yaml",
)


def _resolution(redirect: str, internal: frozenset[str], store: Store) -> Resolution:
    client = TeamsClient(redirect=redirect, timeout_s=10.0)
    cipher = TokenCipher(new_key())
    people = People(store, client, cipher, 18_000.0)
    resolution = Resolution(
        store,
        Conversations(store, client, cipher, 600.0),
        people,
        Learner(store, cipher, 600.0, 18_000.0, people),
        resolve_timeout_s=30.0,
    )
    resolution.internal_tenants = internal
    return resolution


def _send(account: Account, conversation_id: str) -> InterceptedRequest:
    assert account.oid
    token = mint_skypetoken(account.oid, account.tenant.id, account.tenant.region)
    body = orjson.dumps({"content": "<p>bench</p>", "messagetype": "RichText/Html"})
    return InterceptedRequest(
        id=new_decision_id(),
        time=time.time(),
        interceptor="bench",
        method="POST",
        host=f"{account.tenant.region}.ng.msg.teams.microsoft.com",
        path=f"/v1/users/ME/conversations/{conversation_id}/messages",
        headers={"authentication": f"skypetoken={token}", "x-ms-session-id": "bench"},
        body=body,
        body_size=len(body),
    )


def _sign_in(account: Account) -> Observation:
    assert account.oid
    bearer = mint_bearer(account.oid, account.tenant.id, account.email or "", AUDIENCE_SPACES)
    return Observation(
        id="bench-sign-in",
        time=time.time(),
        interceptor="bench",
        kind="token",
        request_headers={"authorization": f"Bearer {bearer}", "x-ms-session-id": "bench"},
    )


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1000:.3f} ms  p99 {p99 * 1000:.3f} ms  (n={len(ordered)})"


async def _warm(resolution: Resolution, request: InterceptedRequest, count: int) -> None:
    enrich: list[float] = []
    encoded: list[float] = []
    outbound = Outbound()  # as the service writes its events
    for _ in range(count):
        started = time.perf_counter()
        event = await resolution.enrich(request)
        middle = time.perf_counter()
        outbound.encode(event)
        enrich.append(middle - started)
        encoded.append(time.perf_counter() - middle)
    print(f"    enrich          {_percentiles(enrich)}")
    print(f"    encode for bus  {_percentiles(encoded)}")


async def run(org: Org, warm: int, mongodb_uri: str | None = None) -> None:
    mongo: AsyncMongoClient[dict[str, Any]] | None = None
    database = f"tfw_bench_{secrets.token_hex(4)}"
    if mongodb_uri:
        mongo = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
        print(f"store: MongoDB at {mongodb_uri.split('?')[0]}, database {database}")
    else:
        print("store: in-process only")
    store = Store(mongo, database)
    try:
        await _run(org, warm, store)
    finally:
        if mongo is not None:
            await mongo.drop_database(database)
            await mongo.close()


async def _run(org: Org, warm: int, store: Store) -> None:
    internal = frozenset(t.id for t in org.tenants.values() if t.key.startswith(org_prefix(org)))
    large = max(org.conversations.values(), key=lambda c: len(org.members(c)))
    small = min(
        (c for c in org.conversations.values() if c.kind == "group"),
        key=lambda c: len(org.members(c)),
    )
    actor = next(a for a in org.members(large) if a.oid and not a.key.startswith("gen"))
    with TeamsSimulator(org) as sim:
        resolution = _resolution(sim.url, internal, store)
        await resolution.learner.learn(_sign_in(actor))
        before = dict(sim.calls)
        started = time.perf_counter()
        event = await resolution.enrich(_send(actor, large.id))
        wall = time.perf_counter() - started
        calls = {k: v - before.get(k, 0) for k, v in sim.calls.items() if v - before.get(k, 0)}
        print(
            f"cold resolve of {large.key} ({len(event.participants)} participants, "
            f"context {event.context.source.value}):"
        )
        print(
            f"    calls {sum(calls.values())}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
        )
        print(f"    wall time {wall * 1000:.0f} ms")
        member = next(a for a in org.members(small) if a.oid)
        await resolution.learner.learn(_sign_in(member))
        await resolution.enrich(_send(member, small.id))
        quiet = sum(sim.calls.values())
        print(f"warm, {small.key} ({len(org.members(small))} participants):")
        await _warm(resolution, _send(member, small.id), warm)
        print(f"warm, {large.key} ({len(event.participants)} participants):")
        await _warm(resolution, _send(actor, large.id), max(50, warm // 10))
        print(f"calls made while warm: {sum(sim.calls.values()) - quiet}")
        await resolution.conversations.client.close()


def org_prefix(org: Org) -> str:
    """The internal tenants are the first tenant's family (``firm``, ``firm-eu``)."""
    return next(iter(org.tenants.values())).key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--org", type=Path, default=None, help="organisation YAML")
    parser.add_argument("--warm", type=int, default=2000, help="warm iterations (small chat)")
    parser.add_argument("--mongodb-uri", default=None, help="write through to this MongoDB")
    args = parser.parse_args(argv)
    path = args.org or next((p for p in DEFAULT_ORGS if p.exists()), None)
    if path is None:
        parser.error("no organisation file found; pass --org")
    print(f"organisation: {path}")
    asyncio.run(run(load_org(path), args.warm, args.mongodb_uri))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
