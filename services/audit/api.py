"""The query API over the archive (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``).

Every route needs an API key (``Authorization: Bearer <key>`` or ``X-API-Key``) with
the ``read`` scope, or ``admin`` for verification and purge. Anonymous reads are
possible only in development with ``api_allow_anonymous`` set. Administrative
actions are written to the admin log with the key that made them.
"""

# No `from __future__ import annotations`: FastAPI must resolve the Annotated
# dependencies declared inside create_app at definition time.
import csv
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Security, status
from fastapi.responses import Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.audit.archive import Archive, RecordFilter
from services.audit.archive import parse_time as time_of
from services.audit.keys import ApiKeys
from services.common.contracts import DecisionRecord

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="an API key made with `tfw audit keys create`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)

CSV_COLUMNS = (
    "decision_id", "time", "decision", "action", "actor_email", "actor_mri",
    "actor_tenant", "conversation_id", "conversation_type", "location", "federated",
    "rules", "would_block", "status", "reason", "ruleset_version", "client_ip",
    "interceptor", "chain", "chain_seq", "hash",
)  # fmt: skip


@dataclass(frozen=True)
class Caller:
    """Who is asking: a key's id and name, or ``anonymous``."""

    who: str
    scope: str


class DecisionsPublic(BaseModel):
    """One page of records, newest first; pass ``next_cursor`` as ``cursor`` for more."""

    items: list[DecisionRecord]
    next_cursor: str | None = None


class RuleCount(BaseModel):
    rule: str
    decision: str
    count: int


class CountsPublic(BaseModel):
    """Decisions per verdict, and per rule and verdict, over the selection."""

    total: int
    by_verdict: dict[str, int]
    by_rule: list[RuleCount]


class VerifyPublic(BaseModel):
    chain: str
    ok: bool
    checked: int
    broken_seq: int | None = None
    broken_id: str | None = None
    problem: str | None = None


def parse_time(value: str | None, name: str) -> float | None:
    """Unix seconds or an ISO 8601 time (UTC when no offset is given); 422 otherwise."""
    if value is None or value == "":
        return None
    try:
        return time_of(value)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: {exc}") from None


def create_app(
    archive: Archive,
    keys: ApiKeys,
    allow_anonymous: bool = False,
    page_max: int = 1000,
) -> FastAPI:
    """The API app. ``allow_anonymous`` must already be refused outside development
    (the settings do that)."""
    app = FastAPI(
        title="TeamsFirewall audit API",
        version="1",
        description="Query, count, export and verify the tamper-evident decision archive.",
    )

    def require(scope: str) -> Callable[..., Awaitable[Caller]]:
        async def caller(
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
            header: Annotated[str | None, Security(_header)],
        ) -> Caller:
            presented = header or (bearer.credentials if bearer else None)
            if not presented:
                if allow_anonymous and scope == "read":
                    return Caller("anonymous", "read")
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "an API key is required",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            key = await keys.authenticate(presented)
            if key is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "unknown or revoked API key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not key.allows(scope):
                raise HTTPException(status.HTTP_403_FORBIDDEN, f"this key lacks the {scope} scope")
            return Caller(f"{key.key_id} ({key.name})", key.scope)

        return caller

    Reader = Annotated[Caller, Depends(require("read"))]
    Admin = Annotated[Caller, Depends(require("admin"))]

    def selection(
        since: Annotated[
            str | None, Query(description="from this time (Unix s or ISO 8601)")
        ] = None,
        until: Annotated[str | None, Query(description="before this time")] = None,
        actor: Annotated[str | None, Query(description="actor MRI, e-mail or UPN")] = None,
        conversation: Annotated[str | None, Query(description="conversation id")] = None,
        action: Annotated[str | None, Query(description="e.g. message.send")] = None,
        verdict: Annotated[str | None, Query(pattern=r"^(allow|block)$")] = None,
        rule: Annotated[str | None, Query(description="a matched rule's name")] = None,
    ) -> RecordFilter:
        return RecordFilter(
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            actor=actor,
            conversation=conversation,
            action=action,
            decision=verdict,
            rule=rule,
        )

    Selection = Annotated[RecordFilter, Depends(selection)]

    @app.get("/v1/decisions", response_model=DecisionsPublic)
    async def list_decisions(
        _: Reader,
        chosen: Selection,
        limit: Annotated[int, Query(ge=1, le=page_max)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the last page")] = None,
    ) -> Response:
        """Records matching every given filter, newest first, a page at a time."""
        items = await archive.page(chosen, limit + 1, cursor)
        more = len(items) > limit
        items = items[:limit]
        return _json({"items": items, "next_cursor": items[-1]["decision_id"] if more else None})

    @app.get("/v1/decisions/{decision_id}", response_model=DecisionRecord)
    async def get_decision(_: Reader, decision_id: str) -> Response:
        """One record by its decision id (shown to users in every block response)."""
        found = await archive.get(decision_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such decision")
        return _json(found)

    @app.get("/v1/counts", response_model=CountsPublic)
    async def counts(_: Reader, chosen: Selection) -> dict[str, Any]:
        """Decisions per verdict and per rule and verdict over the selection."""
        return await archive.counts(chosen)

    @app.get("/v1/export.jsonl", response_class=StreamingResponse)
    async def export_jsonl(caller: Reader, chosen: Selection) -> StreamingResponse:
        """Every selected record, one JSON object per line."""
        log.info("JSON-lines export by %s", caller.who)
        return StreamingResponse(_jsonl(archive.stream(chosen)), media_type="application/x-ndjson")

    @app.get("/v1/export.csv", response_class=StreamingResponse)
    async def export_csv(caller: Reader, chosen: Selection) -> StreamingResponse:
        """Every selected record as a CSV row (the columns most reports need)."""
        log.info("CSV export by %s", caller.who)
        return StreamingResponse(
            _csv(archive.stream(chosen)),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="decisions.csv"'},
        )

    @app.get("/v1/verify", response_model=list[VerifyPublic])
    async def verify(
        caller: Admin, since: Annotated[str | None, Query()] = None
    ) -> list[dict[str, Any]]:
        """Recompute every hash chain; each report names its first broken link."""
        reports = await archive.verify(parse_time(since, "since"))
        result = [
            {
                "chain": r.chain,
                "ok": r.ok,
                "checked": r.checked,
                "broken_seq": r.broken_seq,
                "broken_id": r.broken_id,
                "problem": r.problem,
            }
            for r in reports
        ]
        await archive.log_admin(caller.who, "verify", {"since": since, "reports": result})
        return result

    @app.get("/v1/admin-log")
    async def admin_log(
        _: Admin, limit: Annotated[int, Query(ge=1, le=page_max)] = 100
    ) -> Response:
        """Recent administrative actions (keys, verifications, purges), newest first."""
        return _json(await archive.admin_actions(limit))

    @app.post("/v1/purge")
    async def purge(
        caller: Admin, before: Annotated[str, Query(description="remove older records")]
    ) -> dict[str, int]:
        """Remove records older than ``before`` (the chains stay verifiable)."""
        cutoff = parse_time(before, "before")
        assert cutoff is not None
        removed = await archive.purge(cutoff)
        await archive.log_admin(caller.who, "purge", {"before": cutoff, "removed": removed})
        return {"removed": removed}

    return app


def _json(content: Any) -> Response:
    # Records go out exactly as stored, without validation against the model: a
    # record someone tampered with must still be readable, never a 500.
    return Response(orjson.dumps(content), media_type="application/json")


async def _jsonl(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for record in records:
        yield orjson.dumps(record) + b"\n"


def csv_row(record: dict[str, Any]) -> list[str]:
    """A record flattened to :data:`CSV_COLUMNS`; cells that a spreadsheet would run
    as a formula are prefixed with a quote."""
    actor = record.get("actor") or {}
    conversation = record.get("conversation") or {}
    values: dict[str, Any] = {
        **record,
        "time": datetime.fromtimestamp(float(record.get("time", 0)), UTC).isoformat(),
        "actor_email": actor.get("email"),
        "actor_mri": actor.get("mri"),
        "actor_tenant": actor.get("tenant_id"),
        "conversation_id": conversation.get("id"),
        "conversation_type": conversation.get("type"),
        "rules": ";".join(rule.get("name", "") for rule in record.get("rules") or []),
    }
    row = []
    for column in CSV_COLUMNS:
        value = values.get(column)
        cell = "" if value is None else str(value)
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
            cell = "'" + cell
        row.append(cell)
    return row


async def _csv(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    async for record in records:
        writer.writerow(csv_row(record))
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
