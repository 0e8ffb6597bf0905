"""The hash chain that makes the archive tamper-evident.

Each archived record carries ``chain`` (the partition), ``chain_seq`` (its position,
from 1), ``prev_hash`` (the hash of the record before it in the same chain, or
:data:`GENESIS` for the first) and ``hash``: SHA-256 over the record's canonical
encoding, which is orjson with sorted keys of every field except ``hash`` (and the
storage ``_id``). Editing any field, deleting a record or moving one changes a hash
or breaks a link, and :func:`verify_chain` names the first place where it happens.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64
UNHASHED = frozenset({"hash", "_id"})


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes the hash covers: every field but ``hash`` and ``_id``, keys sorted."""
    body = {key: value for key, value in document.items() if key not in UNHASHED}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def record_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical encoding."""
    return hashlib.sha256(canonical(document)).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    """The last link of one chain: where the next record attaches."""

    chain: str
    seq: int = 0
    hash: str = GENESIS

    def link(self, document: dict[str, Any]) -> ChainHead:
        """Chain ``document`` (a record as JSON) after this head, in place, and
        return the new head."""
        document["chain"] = self.chain
        document["chain_seq"] = self.seq + 1
        document["prev_hash"] = self.hash
        document.pop("hash", None)
        document["hash"] = record_hash(document)
        return ChainHead(self.chain, self.seq + 1, document["hash"])


@dataclass(frozen=True)
class Anchor:
    """Where verification starts: the genesis, or the last record a retention purge
    removed (its position and hash are kept so the first remaining link still checks)."""

    seq: int = 0
    hash: str = GENESIS


@dataclass
class VerifyReport:
    """What verification found in one chain."""

    chain: str
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    broken_seq: int | None = None
    broken_id: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        """One line for a person."""
        if self.ok:
            if not self.checked:
                return f"chain {self.chain}: no records"
            return (
                f"chain {self.chain}: {self.checked} records intact "
                f"(seq {self.first_seq}..{self.last_seq})"
            )
        return (
            f"chain {self.chain}: BROKEN at seq {self.broken_seq} "
            f"(decision {self.broken_id}): {self.problem}"
        )


async def verify_chain(
    chain: str, documents: AsyncIterable[Mapping[str, Any]], anchor: Anchor | None
) -> VerifyReport:
    """Walk ``documents`` (one chain, in ``chain_seq`` order) and stop at the first
    broken link.

    ``anchor`` is the link before the first document: the genesis, a purge anchor, or
    the record just before a ``--since`` start. ``None`` means it is unknown, so the
    first document's ``prev_hash`` is taken on trust (only its own hash is checked).
    """
    report = VerifyReport(chain)
    expected_seq = None if anchor is None else anchor.seq + 1
    expected_prev = None if anchor is None else anchor.hash
    async for document in documents:
        seq = document.get("chain_seq")
        problem = _problem(document, expected_seq, expected_prev)
        if report.first_seq is None:
            report.first_seq = seq
        if problem is not None:
            report.broken_seq = seq if isinstance(seq, int) else None
            report.broken_id = str(document.get("decision_id") or document.get("_id"))
            report.problem = problem
            return report
        report.checked += 1
        report.last_seq = seq
        expected_seq = int(seq) + 1 if isinstance(seq, int) else None
        expected_prev = str(document.get("hash"))
    return report


def _problem(
    document: Mapping[str, Any], expected_seq: int | None, expected_prev: str | None
) -> str | None:
    seq = document.get("chain_seq")
    if not isinstance(seq, int):
        return "the record has no chain position"
    if expected_seq is not None and seq != expected_seq:
        if seq > expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            return f"record(s) at seq {missing} are missing (deleted?)"
        return f"seq {seq} appears where {expected_seq} was expected (reordered or duplicated?)"
    if record_hash(document) != document.get("hash"):
        return "the record's content does not match its hash (edited?)"
    if expected_prev is not None and document.get("prev_hash") != expected_prev:
        return "prev_hash does not match the previous record's hash (removed or reordered?)"
    return None
