"""The MongoDB archive of decision records: stored once, chained, queried, purged.

Records are stored by decision id (``_id``), so a redelivered record is stored once.
Each new record is linked into its chain (see :mod:`services.audit.chain`); a unique
index on ``(chain, chain_seq)`` makes two writers that extend the same chain at the
same time collide instead of forking it: the loser reloads the head and retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.audit.chain import Anchor, ChainHead, VerifyReport, verify_chain
from services.common.contracts import (
    DECISION_ID_END_S,
    DecisionRecord,
    RuleSetDocument,
    decision_id_floor,
)

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
CHAIN_RETRIES = 5
# How far a record's ``time`` may lie from the millisecond in its decision id. Both are
# taken by the interceptor microseconds apart; the slack only widens the index range.
ID_TIME_SLACK_S = 300.0
# How long an archive process trusts its finding that records without ``actor_keys``
# remain (a finding that none remain is checked again on every actor search).
LEGACY_CHECK_S = 300.0


class ChainConflict(Exception):
    """Another writer kept extending the chain; the batch is left for redelivery."""


@dataclass(frozen=True)
class RecordFilter:
    """What a query selects. Times are Unix seconds; every field is optional."""

    since: float | None = None
    until: float | None = None
    actor: str | None = None  # MRI, e-mail or UPN
    conversation: str | None = None
    action: str | None = None
    decision: str | None = None  # the verdict: allow or block
    rule: str | None = None
    chain: str | None = None

    def query(self, legacy_actors: bool = False) -> dict[str, Any]:
        """The MongoDB filter.

        A time span also bounds the decision id (``_id``): a ULID whose leading bits are
        the millisecond the interceptor made it in, moments before the record's ``time``.
        The ``_id`` index so serves as the time index, and the exact ``time`` condition
        still decides; the bounds are widened by :data:`ID_TIME_SLACK_S` on both sides.

        An actor is found through ``actor_keys`` (one index for the MRI, e-mail and
        UPN); ``legacy_actors`` adds the fields themselves, for archives that still hold
        records stored before ``actor_keys`` existed.
        """
        query: dict[str, Any] = {}
        span: dict[str, float] = {}
        ids: dict[str, str] = {}
        if self.since is not None:
            span["$gte"] = self.since
            ids["$gte"] = decision_id_floor(self.since - ID_TIME_SLACK_S)
        if self.until is not None:
            span["$lt"] = self.until
            ids["$lt"] = decision_id_floor(self.until + ID_TIME_SLACK_S)
        if span:
            query["time"] = span
            query["_id"] = ids
        if self.actor:
            forms = sorted({self.actor, self.actor.lower()})
            found: dict[str, Any] = {"actor_keys": {"$in": forms}}
            if legacy_actors:
                query["$or"] = [
                    found,
                    {"actor.mri": self.actor},
                    {"actor.email": self.actor.lower()},
                    {"actor.upn": self.actor.lower()},
                ]
            else:
                query.update(found)
        for field, value in (
            ("conversation.id", self.conversation),
            ("action", self.action),
            ("decision", self.decision),
            ("rules.name", self.rule),
            ("chain", self.chain),
        ):
            if value:
                query[field] = value
        return query


def parse_time(value: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC when it has no offset). Raises ValueError
    with a reason for anything else, infinities and times no decision id can hold
    included."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not a Unix time or ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not (0 <= seconds < DECISION_ID_END_S):
        raise ValueError("not a time between 1970 and the year 10889")
    return seconds


def actor_keys(actor: Mapping[str, Any] | None) -> list[str]:
    """The forms an actor is searched by: the MRI as it is, e-mail and UPN lower-cased."""
    if not actor:
        return []
    keys: list[str] = []
    for field, fold in (("mri", False), ("email", True), ("upn", True)):
        value = actor.get(field)
        if isinstance(value, str) and value:
            key = value.lower() if fold else value
            if key not in keys:
                keys.append(key)
    return keys


class Archive:
    """The ``decisions`` collection and its companions (chain anchors, admin log)."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], database: str, chain: str = "main"
    ) -> None:
        self.client = client
        db = client[database]
        self.decisions = db["decisions"]
        self.anchors = db["decision_chain_anchors"]
        self.admin_log = db["audit_admin_log"]
        self.chain = chain
        self._head: ChainHead | None = None
        self._legacy: float | None = None  # when records without actor_keys were seen

    async def ensure_indexes(self) -> None:
        """Indexes for the chain and for the filters a review starts from: actor (by
        any of its forms), conversation, rule and verdict, each with time.

        Time itself needs no index of its own: the decision id (``_id``) is a ULID,
        time-ordered, and every time filter bounds it (:meth:`RecordFilter.query`).
        Every index is paid for on every archived record (docs/performance.md), so
        action, a filter that narrows little, has none either. Archives created before
        keep their older indexes until an operator drops them (docs/audit.md).
        """
        await self.decisions.create_index(
            [("chain", ASCENDING), ("chain_seq", ASCENDING)], unique=True
        )
        await self.decisions.create_index([("actor_keys", ASCENDING), ("time", DESCENDING)])
        await self.decisions.create_index([("conversation.id", ASCENDING), ("time", DESCENDING)])
        await self.decisions.create_index([("rules.name", ASCENDING), ("time", DESCENDING)])
        await self.decisions.create_index([("decision", ASCENDING), ("time", DESCENDING)])

    async def legacy_actors(self) -> bool:
        """Whether the archive holds records stored before ``actor_keys`` existed
        (looked up through the ``actor_keys`` index; a yes is remembered a while)."""
        now = time.monotonic()
        if self._legacy is None or now - self._legacy > LEGACY_CHECK_S:
            found = await self.decisions.find_one({"actor_keys": None}, {"_id": 1})
            if found is None:
                # Not remembered: a writer not yet upgraded (or a restore) may add one.
                return False
            self._legacy = now
        return True

    # --- writing ------------------------------------------------------------------------

    async def head(self, chain: str | None = None) -> ChainHead:
        """The last link of a chain, read from the database."""
        chain = chain or self.chain
        cursor = self.decisions.find({"chain": chain}, {"chain_seq": 1, "hash": 1})
        async for last in cursor.sort("chain_seq", DESCENDING).limit(1):
            return ChainHead(chain, int(last["chain_seq"]), str(last["hash"]))
        anchor = await self.anchor(chain)
        return ChainHead(chain, anchor.seq, anchor.hash)

    async def store(self, records: list[DecisionRecord]) -> int:
        """Chain and insert the records not archived yet; returns how many were new.

        Raises on a database failure (nothing is acknowledged then); a record is never
        stored twice, and the chain never forks.
        """
        if not records:
            return 0
        # Duplicates are rare (a redelivery after a crash), so the first attempt just
        # inserts; only after a duplicate-key error are archived ids looked up first.
        fresh = list({record.decision_id: record for record in records}.values())
        for attempt in range(CHAIN_RETRIES):
            if attempt:
                fresh = await self._not_archived(fresh)
            if not fresh:
                return 0
            head = self._head or await self.head()
            documents = []
            for record in fresh:
                document = record.model_dump(mode="json", by_alias=True)
                document["actor_keys"] = actor_keys(document.get("actor"))
                head = head.link(document)
                document["_id"] = record.decision_id
                documents.append(document)
            try:
                await self.decisions.insert_many(documents, ordered=True)
            except BulkWriteError as exc:
                self._head = None
                errors = exc.details.get("writeErrors", [])
                if any(error.get("code") != DUPLICATE_KEY for error in errors):
                    raise
                log.info("chain %s moved under us; reloading its head", self.chain)
                continue
            except BaseException:
                self._head = None  # part of the batch may be in: read the head again
                raise
            self._head = head
            return len(documents)
        raise ChainConflict(f"chain {self.chain} kept moving for {CHAIN_RETRIES} attempts")

    async def _not_archived(self, records: list[DecisionRecord]) -> list[DecisionRecord]:
        unique = {record.decision_id: record for record in records}
        found = self.decisions.find({"_id": {"$in": list(unique)}}, {"_id": 1})
        async for document in found:
            unique.pop(document["_id"], None)
        return list(unique.values())

    # --- reading -------------------------------------------------------------------------

    async def _query(self, selection: RecordFilter) -> dict[str, Any]:
        legacy = await self.legacy_actors() if selection.actor else False
        return selection.query(legacy)

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        """One record by decision id, as stored (without ``_id``)."""
        return await self.decisions.find_one({"_id": decision_id}, {"_id": 0})

    async def page(
        self, selection: RecordFilter, limit: int, cursor: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``cursor`` is the last decision id of the previous page."""
        query = await self._query(selection)
        if cursor:
            bounds = query.setdefault("_id", {})
            bounds["$lt"] = min(cursor, bounds.get("$lt", cursor))
        found = self.decisions.find(query).sort("_id", DESCENDING).limit(limit)
        return [_public(document) async for document in found]

    async def stream(
        self, selection: RecordFilter, batch: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Every selected record, newest first, a page at a time (for exports)."""
        cursor: str | None = None
        while True:
            page = await self.page(selection, batch, cursor)
            for document in page:
                yield document
            if len(page) < batch:
                return
            cursor = page[-1]["decision_id"]

    async def counts(self, selection: RecordFilter) -> dict[str, Any]:
        """How many decisions per verdict, and per rule and verdict, in the selection."""
        match = {"$match": await self._query(selection)}
        by_verdict: dict[str, int] = {}
        async for row in await self.decisions.aggregate(
            [match, {"$group": {"_id": "$decision", "n": {"$sum": 1}}}]
        ):
            by_verdict[str(row["_id"])] = int(row["n"])
        by_rule = []
        pipeline: list[dict[str, Any]] = [
            match,
            {"$unwind": "$rules"},
            {"$group": {"_id": {"rule": "$rules.name", "decision": "$decision"}, "n": {"$sum": 1}}},
        ]
        async for row in await self.decisions.aggregate(pipeline):
            by_rule.append(
                {"rule": row["_id"]["rule"], "decision": row["_id"]["decision"], "count": row["n"]}
            )
        by_rule.sort(key=lambda row: (-row["count"], row["rule"], row["decision"]))
        return {"total": sum(by_verdict.values()), "by_verdict": by_verdict, "by_rule": by_rule}

    # --- verification and retention -------------------------------------------------------

    async def anchor(self, chain: str) -> Anchor:
        """Where a chain starts now: the genesis, or the last purged link."""
        found = await self.anchors.find_one({"_id": chain})
        if found is None:
            return Anchor()
        return Anchor(int(found["seq"]), str(found["hash"]))

    async def chains(self) -> list[str]:
        """Every chain that has records or a purge anchor."""
        names = set(await self.decisions.distinct("chain"))
        names.update(await self.anchors.distinct("_id"))
        return sorted(str(name) for name in names if name)

    async def verify(self, since: float | None = None) -> list[VerifyReport]:
        """Recompute every chain (from the first record at or after ``since``)."""
        reports = []
        for chain in await self.chains():
            reports.append(await self.verify_one(chain, since))
        return reports

    async def verify_one(self, chain: str, since: float | None = None) -> VerifyReport:
        """Recompute one chain and name its first broken link."""
        anchor: Anchor | None = await self.anchor(chain)
        start = anchor.seq + 1 if anchor else 1
        if since is not None:
            first = self.decisions.find(
                RecordFilter(since=since, chain=chain).query(), {"chain_seq": 1}
            )
            seqs = [doc["chain_seq"] async for doc in first.sort("chain_seq", ASCENDING).limit(1)]
            if not seqs:
                return VerifyReport(chain)
            if seqs[0] > start:
                start = int(seqs[0])
                before = await self.decisions.find_one({"chain": chain, "chain_seq": start - 1})
                anchor = Anchor(start - 1, str(before["hash"])) if before else None
        documents = self.decisions.find({"chain": chain, "chain_seq": {"$gte": start}})
        return await verify_chain(chain, documents.sort("chain_seq", ASCENDING), anchor)

    async def purge(self, before: float, batch: int = 1000) -> int:
        """Remove records older than ``before`` from the start of every chain.

        Only a prefix of each chain is removed (up to the first newer record), and the
        last removed link is kept as the chain's anchor *before* the records go, so the
        remaining chain still verifies from its first record.
        """
        removed = 0
        for chain in await self.chains():
            while True:
                anchor = await self.anchor(chain)
                found = self.decisions.find(
                    {"chain": chain, "chain_seq": {"$gt": anchor.seq}},
                    {"time": 1, "chain_seq": 1, "hash": 1},
                )
                prefix = []
                async for document in found.sort("chain_seq", ASCENDING).limit(batch):
                    if document["time"] >= before:
                        break
                    prefix.append(document)
                if not prefix:
                    break
                last = prefix[-1]
                try:
                    # Only ever forward: a concurrent purge may already be further along.
                    anchored = {"seq": last["chain_seq"], "hash": last["hash"], "at": time.time()}
                    await self.anchors.update_one(
                        {"_id": chain, "seq": {"$lt": last["chain_seq"]}},
                        {"$set": anchored},
                        upsert=True,
                    )
                except DuplicateKeyError:
                    pass
                result = await self.decisions.delete_many(
                    {"_id": {"$in": [document["_id"] for document in prefix]}}
                )
                removed += result.deleted_count
                if len(prefix) < batch:
                    break
        return removed

    async def log_admin(self, who: str, action: str, detail: Mapping[str, Any]) -> None:
        """Keep an administrative action (key management, purge) in the admin log."""
        await self.admin_log.insert_one(
            {"time": time.time(), "who": who, "action": action, "detail": dict(detail)}
        )
        log.info("admin action %s by %s", action, who)

    async def log_rule_push(self, document: RuleSetDocument) -> bool:
        """Keep a rule-set push in the admin log, once per pushed version (a restarted
        audit sees the active version again). Returns True when it was new."""
        result = await self.admin_log.update_one(
            {"_id": f"rules:{document.version}:{document.pushed_at}"},
            {
                "$setOnInsert": {
                    "time": document.pushed_at or time.time(),
                    "who": document.pushed_by or "unknown",
                    "action": "rules.push",
                    "detail": {
                        "version": document.version,
                        "internal_tenants": len(document.internal_tenants),
                    },
                }
            },
            upsert=True,
        )
        if result.upserted_id is not None:
            log.info("rule set %s pushed by %s", document.version, document.pushed_by)
        return result.upserted_id is not None

    async def admin_actions(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent administrative actions, newest first."""
        found = self.admin_log.find({}, {"_id": 0}).sort("time", DESCENDING).limit(limit)
        return [entry async for entry in found]


def _public(document: dict[str, Any]) -> dict[str, Any]:
    document.pop("_id", None)
    return document
