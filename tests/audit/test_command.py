"""``tfw audit``: verify exits non-zero on a broken chain; keys are made, listed, revoked."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import nats
import orjson
import pytest
from pymongo import MongoClient

from services.audit.chain import ChainHead
from services.common.contracts import Subjects
from tests.audit.support import records
from tfw.cli import main


@pytest.fixture
def database(mongodb_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    name = "tfw_audit_cli_" + secrets.token_hex(4)
    monkeypatch.setenv("TFW_MONGODB_URI", mongodb_uri)
    monkeypatch.setenv("TFW_DATABASE", name)
    monkeypatch.delenv("TFW_CONFIG", raising=False)
    with MongoClient(mongodb_uri) as client:
        yield client[name]
        client.drop_database(name)


def seed(database: Any, count: int) -> list[dict[str, Any]]:
    head = ChainHead("main")
    documents = []
    for item in records(count):
        document = item.model_dump(mode="json", by_alias=True)
        head = head.link(document)
        document["_id"] = item.decision_id
        documents.append(document)
    database.decisions.insert_many(documents)
    return documents


def test_verify_passes_an_intact_chain(database: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seed(database, 4)
    assert main(["audit", "verify"]) == 0
    assert "chain main: 4 records intact (seq 1..4)" in capsys.readouterr().out


def test_verify_names_the_first_broken_link_and_exits_1(
    database: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = seed(database, 4)
    database.decisions.update_one({"_id": documents[1]["_id"]}, {"$set": {"reason": "x"}})
    assert main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN at seq 2 (decision {documents[1]['decision_id']})" in out


def test_verify_since_a_time_skips_older_records(
    database: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = seed(database, 4)
    database.decisions.update_one({"_id": documents[0]["_id"]}, {"$set": {"reason": "x"}})
    between = (documents[1]["time"] + documents[2]["time"]) / 2  # clear of rounding
    since = datetime.fromtimestamp(between, UTC).isoformat()
    assert main(["audit", "verify", "--since", since]) == 0
    assert "2 records intact (seq 3..4)" in capsys.readouterr().out
    assert main(["audit", "verify"]) == 1


def test_keys_are_created_listed_and_revoked_and_each_change_is_logged(
    database: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "keys", "create", "--name", "siem", "--scope", "admin"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("tfwk_")
    key_id = secret.split("_")[1]
    assert main(["audit", "keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "active" in listed and secret not in listed
    assert main(["audit", "keys", "revoke", key_id]) == 0
    assert main(["audit", "keys", "revoke", key_id]) == 1
    actions = [entry["action"] for entry in database.audit_admin_log.find().sort("time", 1)]
    assert actions == ["key.create", "key.revoke"]


def test_export_writes_json_lines_that_match_the_archive(
    database: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = seed(database, 3)
    assert main(["audit", "export", "--format", "jsonl"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["decision_id"] for line in lines) == sorted(
        document["decision_id"] for document in documents
    )
    assert main(["audit", "export", "--format", "csv", "--verdict", "block"]) == 0
    assert capsys.readouterr().out.strip().count("\n") == 0  # the header only


def test_a_durable_consumer_for_a_siem_shipper_is_created_with_explicit_acks(
    nats_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    subjects = Subjects("tc" + secrets.token_hex(3))
    monkeypatch.setenv("TFW_NATS_URL", nats_url)
    monkeypatch.setenv("TFW_SUBJECT_PREFIX", subjects.prefix)
    monkeypatch.setenv("TFW_STREAM_MAX_BYTES", str(64 * 1024 * 1024))
    assert main(["audit", "consumer", "vector"]) == 0
    assert main(["audit", "consumer", "vector"]) == 0  # again: unchanged, no error
    out = capsys.readouterr().out
    assert f"durable consumer vector on stream {subjects.decision_stream}" in out

    async def inspect() -> tuple[str, str]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            info = await js.consumer_info(subjects.decision_stream, "vector")
            await js.delete_stream(subjects.decision_stream)
        finally:
            await nc.close()
        return str(info.config.ack_policy), str(info.config.durable_name)

    ack_policy, durable = asyncio.run(inspect())
    assert "explicit" in ack_policy.lower() and durable == "vector"


def test_a_time_that_is_not_one_stops_the_command_and_says_why(database: Any) -> None:
    seed(database, 1)
    with pytest.raises(SystemExit) as stopped:
        main(["audit", "verify", "--since", "inf"])
    assert str(stopped.value) == (
        "tfw audit: --since 'inf': not a time between 1970 and the year 10889"
    )
