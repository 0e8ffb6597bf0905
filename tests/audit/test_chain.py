"""The hash chain on its own: links, canonical hashes and what verification reports."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

from services.audit.chain import GENESIS, Anchor, ChainHead, record_hash, verify_chain
from tests.audit.support import records


def chained(count: int) -> list[dict[str, Any]]:
    head = ChainHead("main")
    documents = []
    for item in records(count):
        document = item.model_dump(mode="json", by_alias=True)
        head = head.link(document)
        documents.append(document)
    return documents


async def walk(documents: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for document in documents:
        yield document


async def test_a_fresh_chain_starts_at_the_genesis_and_links_each_record_to_the_last() -> None:
    documents = chained(3)
    assert documents[0]["prev_hash"] == GENESIS
    assert [d["chain_seq"] for d in documents] == [1, 2, 3]
    assert documents[1]["prev_hash"] == documents[0]["hash"]
    assert documents[2]["prev_hash"] == documents[1]["hash"]
    report = await verify_chain("main", walk(documents), Anchor())
    assert report.ok and report.checked == 3
    assert "3 records intact" in report.describe()


def test_the_hash_ignores_key_order_and_the_storage_id() -> None:
    document = chained(1)[0]
    shuffled = dict(reversed(list(document.items())))
    shuffled["_id"] = "anything"
    assert record_hash(shuffled) == document["hash"]


async def test_an_edited_field_is_named_as_the_first_broken_link() -> None:
    documents = chained(5)
    documents[2]["decision"] = "block"
    report = await verify_chain("main", walk(documents), Anchor())
    assert not report.ok
    assert report.broken_seq == 3
    assert report.broken_id == documents[2]["decision_id"]
    assert "edited" in (report.problem or "")
    assert report.checked == 2


async def test_a_deleted_record_shows_as_a_gap() -> None:
    documents = chained(5)
    del documents[1]
    report = await verify_chain("main", walk(documents), Anchor())
    assert report.broken_seq == 3
    assert "seq 2 are missing" in (report.problem or "")


async def test_two_records_swapped_with_rewritten_positions_and_hashes_break_the_links() -> None:
    documents = chained(5)
    second, third = copy.deepcopy(documents[1]), copy.deepcopy(documents[2])
    # A careful forger moves the records and recomputes their own hashes.
    third["chain_seq"], second["chain_seq"] = 2, 3
    third["hash"] = record_hash(third)
    second["hash"] = record_hash(second)
    documents[1], documents[2] = third, second
    report = await verify_chain("main", walk(documents), Anchor())
    assert not report.ok
    assert report.broken_seq == 2
    assert "prev_hash" in (report.problem or "")


async def test_a_purge_anchor_lets_the_rest_of_the_chain_verify() -> None:
    documents = chained(5)
    anchor = Anchor(2, documents[1]["hash"])
    assert (await verify_chain("main", walk(documents[2:]), anchor)).ok
    assert not (await verify_chain("main", walk(documents[3:]), anchor)).ok


async def test_an_unknown_anchor_trusts_only_the_first_link() -> None:
    documents = chained(4)
    assert (await verify_chain("main", walk(documents[2:]), None)).ok
