"""The MongoDB archive of decision records: stored once, by decision id."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError

from services.common.contracts import DecisionRecord

DUPLICATE_KEY = 11000


class Archive:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self.client = client
        self.decisions = client[database]["decisions"]

    async def ensure_indexes(self) -> None:
        await self.decisions.create_index([("time", DESCENDING)])
        await self.decisions.create_index([("actor.mri", ASCENDING), ("time", DESCENDING)])
        await self.decisions.create_index([("conversation.id", ASCENDING), ("time", DESCENDING)])
        await self.decisions.create_index([("rules.name", ASCENDING), ("time", DESCENDING)])
        await self.decisions.create_index([("decision", ASCENDING), ("time", DESCENDING)])

    async def store(self, records: list[DecisionRecord]) -> int:
        """Insert records; ones already archived (same decision id) are skipped.
        Returns how many were new."""
        if not records:
            return 0
        documents = []
        for record in records:
            document = record.model_dump(mode="json", by_alias=True)
            document["_id"] = record.decision_id
            documents.append(document)
        try:
            result = await self.decisions.insert_many(documents, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            return int(exc.details.get("nInserted", 0))
