"""The archive on a real MongoDB-wire server: stored once, chained, verified, purged."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.audit.archive import Archive, RecordFilter
from services.common.contracts import Action, Decision
from tests.audit.support import BOB, record, records


@pytest.fixture
async def client(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    yield mongo
    await mongo.close()


@pytest.fixture
async def archive(client: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[Archive]:
    database = "tfw_audit_archive_" + secrets.token_hex(4)
    archive = Archive(client, database)
    await archive.ensure_indexes()
    yield archive
    await client.drop_database(database)


async def test_a_redelivered_batch_is_stored_once_and_keeps_the_chain_whole(
    archive: Archive,
) -> None:
    batch = records(5)
    assert await archive.store(batch) == 5
    assert await archive.store(batch[2:] + records(2)) == 2
    assert await archive.decisions.count_documents({}) == 7
    [report] = await archive.verify()
    assert report.ok and report.checked == 7 and report.last_seq == 7


async def test_a_restarted_writer_continues_the_chain_where_the_database_says(
    archive: Archive, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    await archive.store(records(3))
    restarted = Archive(client, archive.decisions.database.name)
    await restarted.store(records(2))
    [report] = await archive.verify()
    assert report.ok and report.checked == 5


async def test_two_writers_on_one_chain_take_turns_instead_of_forking_it(
    archive: Archive, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    other = Archive(client, archive.decisions.database.name)
    await archive.store(records(1))
    await other.store(records(1))  # now `archive` holds a stale head
    await asyncio.gather(*(writer.store(records(3)) for writer in (archive, other, archive, other)))
    [report] = await archive.verify()
    assert report.ok and report.checked == 14
    seqs = [d["chain_seq"] async for d in archive.decisions.find().sort("chain_seq", 1)]
    assert seqs == list(range(1, 15))


async def test_separate_partitions_make_separate_chains(
    archive: Archive, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    second = Archive(client, archive.decisions.database.name, chain="audit-1")
    await archive.store(records(2))
    await second.store(records(3))
    reports = {report.chain: report for report in await archive.verify()}
    assert reports["main"].checked == 2 and reports["audit-1"].checked == 3
    assert all(report.ok for report in reports.values())


async def stored(archive: Archive, count: int) -> list[dict[str, Any]]:
    await archive.store(records(count))
    return [d async for d in archive.decisions.find().sort("chain_seq", 1)]


async def test_verification_names_an_edited_record(archive: Archive) -> None:
    documents = await stored(archive, 6)
    await archive.decisions.update_one(
        {"_id": documents[3]["_id"]}, {"$set": {"decision": "block"}}
    )
    [report] = await archive.verify()
    assert not report.ok
    assert (report.broken_seq, report.broken_id) == (4, documents[3]["decision_id"])
    assert "edited" in report.describe()


async def test_verification_names_the_gap_a_deleted_record_leaves(archive: Archive) -> None:
    documents = await stored(archive, 6)
    await archive.decisions.delete_one({"_id": documents[2]["_id"]})
    [report] = await archive.verify()
    assert report.broken_seq == 4
    assert "seq 3 are missing" in report.describe()


async def test_verification_catches_records_moved_to_other_positions(archive: Archive) -> None:
    documents = await stored(archive, 6)
    first, second = documents[1], documents[4]
    # Swap the two records' positions (both keep their own, now wrong, hashes).
    await archive.decisions.update_one({"_id": first["_id"]}, {"$set": {"chain_seq": -1}})
    await archive.decisions.update_one({"_id": second["_id"]}, {"$set": {"chain_seq": 2}})
    await archive.decisions.update_one({"_id": first["_id"]}, {"$set": {"chain_seq": 5}})
    [report] = await archive.verify()
    assert not report.ok and report.broken_seq == 2


async def test_verification_since_a_time_checks_only_the_later_records(archive: Archive) -> None:
    now = time.time()
    await archive.store(records(4, start=now - 100))
    await archive.store(records(3, start=now - 10))
    await archive.decisions.update_one({"chain_seq": 2}, {"$set": {"reason": "forged"}})
    [report] = await archive.verify(since=now - 50)
    assert report.ok and report.first_seq == 5 and report.checked == 3
    [everything] = await archive.verify()
    assert everything.broken_seq == 2


async def test_a_purge_removes_old_records_and_the_rest_still_verifies(archive: Archive) -> None:
    now = time.time()
    await archive.store(records(5, start=now - 40 * 86400))
    await archive.store(records(3, start=now - 60))
    removed = await archive.purge(before=now - 30 * 86400)
    assert removed == 5
    assert await archive.decisions.count_documents({}) == 3
    [report] = await archive.verify()
    assert report.ok and report.first_seq == 6
    await archive.store(records(1))
    [after] = await archive.verify()
    assert after.ok and after.checked == 4


async def test_a_record_deleted_after_a_purge_is_still_caught(archive: Archive) -> None:
    now = time.time()
    await archive.store(records(3, start=now - 40 * 86400))
    await archive.store(records(3, start=now - 60))
    await archive.purge(before=now - 30 * 86400)
    await archive.decisions.delete_one({"chain_seq": 4})
    [report] = await archive.verify()
    assert not report.ok and report.broken_seq == 5


async def test_filters_select_by_actor_conversation_action_verdict_rule_and_time(
    archive: Archive,
) -> None:
    now = time.time()
    await archive.store(
        [
            record(at=now - 30),
            record(at=now - 20, actor=BOB, conversation="19:other@thread.v2"),
            record(at=now - 10, action=Action.MESSAGE_EDIT, decision=Decision.BLOCK,
                   rules=("No edits abroad",)),
        ]
    )  # fmt: skip

    async def count(**selection: Any) -> int:
        return len(await archive.page(RecordFilter(**selection), 100))

    assert await count() == 3
    assert await count(actor=BOB) == 1
    assert await count(actor="Bob@Firm.example") == 1
    assert await count(conversation="19:other@thread.v2") == 1
    assert await count(action="message.edit") == 1
    assert await count(decision="block") == 1
    assert await count(rule="No edits abroad") == 1
    assert await count(since=now - 25) == 2
    assert await count(since=now - 25, until=now - 15) == 1


async def test_pages_follow_the_cursor_newest_first_without_repeats(archive: Archive) -> None:
    await archive.store(records(7))
    seen: list[str] = []
    cursor = None
    while True:
        page = await archive.page(RecordFilter(), 3, cursor)
        seen += [item["decision_id"] for item in page]
        if len(page) < 3:
            break
        cursor = page[-1]["decision_id"]
    assert len(seen) == 7 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


async def test_counts_per_verdict_and_per_rule(archive: Archive) -> None:
    await archive.store(
        [
            record(decision=Decision.BLOCK, rules=("Wall",)),
            record(decision=Decision.BLOCK, rules=("Wall", "Log all")),
            record(rules=("Log all",)),
            record(),
        ]
    )
    counts = await archive.counts(RecordFilter())
    assert counts["total"] == 4
    assert counts["by_verdict"] == {"block": 2, "allow": 2}
    assert {"rule": "Wall", "decision": "block", "count": 2} in counts["by_rule"]
    assert {"rule": "Log all", "decision": "allow", "count": 1} in counts["by_rule"]


async def test_an_actor_is_found_by_mri_email_or_upn_through_one_index(archive: Archive) -> None:
    now = time.time()
    upn = record(at=now - 5)
    upn.actor.upn = "Alice.Smith@Firm.onmicrosoft.example"  # a UPN that is not the e-mail
    await archive.store([upn, record(at=now - 4, actor=BOB)])

    async def ids(actor: str) -> list[str]:
        return [item["decision_id"] for item in await archive.page(RecordFilter(actor=actor), 10)]

    assert await ids("alice.smith@firm.onmicrosoft.example") == [upn.decision_id]
    assert await ids("ALICE@firm.example") == [upn.decision_id]
    assert await ids(upn.actor.mri or "") == [upn.decision_id]
    stored = await archive.get(upn.decision_id)
    assert stored is not None
    assert stored["actor_keys"] == [upn.actor.mri, "alice@firm.example",
                                    "alice.smith@firm.onmicrosoft.example"]
    indexes = await archive.decisions.index_information()
    keys = [tuple(name for name, _ in spec["key"]) for spec in indexes.values()]
    assert ("actor_keys", "time") in keys
    assert ("time",) not in keys and ("action", "time") not in keys


async def test_records_stored_before_actor_keys_existed_are_still_found_by_actor(
    archive: Archive,
) -> None:
    now = time.time()
    await archive.store([record(at=now - 3)])
    older = record(at=now - 9, actor=BOB).model_dump(mode="json", by_alias=True)
    older["_id"] = older["decision_id"]
    del older["actor_keys"]  # as an earlier audit stored it
    await archive.decisions.insert_one(older)
    found = await archive.page(RecordFilter(actor="bob@firm.example"), 10)
    assert [item["decision_id"] for item in found] == [older["decision_id"]]
    assert (await archive.counts(RecordFilter(actor=BOB)))["total"] == 1


async def test_a_time_span_keeps_records_at_its_edges(archive: Archive) -> None:
    now = time.time()
    edge = record(at=now - 60)
    # The record's time a little after the millisecond in its id, as the interceptor
    # takes them; and one a whole second later, as a late record would be.
    edge.time = now - 60 + 0.0004
    late = record(at=now - 61)
    late.time = now - 60
    early = record(at=now - 120)
    await archive.store([early, edge, late, record(at=now - 1)])

    async def ids(**selection: Any) -> set[str]:
        page = await archive.page(RecordFilter(**selection), 10)
        return {item["decision_id"] for item in page}

    assert await ids(since=now - 60, until=now - 59) == {edge.decision_id, late.decision_id}
    assert await ids(until=now - 60) == {early.decision_id}
    assert len(await ids(since=now - 60)) == 3


async def test_a_record_from_a_writer_not_yet_upgraded_is_found_by_the_next_search(
    archive: Archive,
) -> None:
    now = time.time()
    await archive.store([record(at=now - 3)])
    assert await archive.page(RecordFilter(actor=BOB), 10) == []  # no legacy record yet
    older = record(at=now - 2, actor=BOB).model_dump(mode="json", by_alias=True)
    older["_id"] = older["decision_id"]
    del older["actor_keys"]  # as an audit of the previous version stores it
    await archive.decisions.insert_one(older)
    found = await archive.page(RecordFilter(actor=BOB), 10)
    assert [item["decision_id"] for item in found] == [older["decision_id"]]
