"""The query API over a real archive: auth, filters, pages, counts, exports, admin."""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from pymongo import AsyncMongoClient

from services.audit.api import create_app
from services.audit.archive import Archive
from services.audit.keys import ApiKeys
from services.common.contracts import Action, Decision
from tests.audit.support import BOB, record


@dataclass
class Api:
    http: httpx.AsyncClient
    archive: Archive
    keys: ApiKeys
    read_key: str
    admin_key: str

    def as_reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_key}"}

    def as_admin(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}


@pytest.fixture
async def mongo(mongodb_uri: str) -> AsyncIterator[tuple[AsyncMongoClient[dict[str, Any]], str]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    database = "tfw_audit_api_" + secrets.token_hex(4)
    yield client, database
    await client.drop_database(database)
    await client.close()


async def serve(
    mongo: tuple[AsyncMongoClient[dict[str, Any]], str], allow_anonymous: bool = False
) -> Api:
    client, database = mongo
    archive = Archive(client, database)
    await archive.ensure_indexes()
    keys = ApiKeys(client, database)
    _, read_key = await keys.create("reader", "read")
    _, admin_key = await keys.create("admin", "admin")
    app = create_app(archive, keys, allow_anonymous=allow_anonymous, page_max=50)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit")
    return Api(http, archive, keys, read_key, admin_key)


@pytest.fixture
async def api(mongo: tuple[AsyncMongoClient[dict[str, Any]], str]) -> AsyncIterator[Api]:
    served = await serve(mongo)
    now = time.time()
    await served.archive.store(
        [
            record(at=now - 300),
            record(at=now - 200, actor=BOB, conversation="19:other@thread.v2"),
            record(at=now - 100, action=Action.MESSAGE_EDIT, decision=Decision.BLOCK,
                   rules=("No edits abroad",)),
            record(at=now - 50, rules=("Log =SUM(A1)",)),
        ]
    )  # fmt: skip
    yield served
    await served.http.aclose()


async def test_without_a_key_every_route_answers_401(api: Api) -> None:
    for path in ("/v1/decisions", "/v1/counts", "/v1/export.csv", "/v1/verify"):
        response = await api.http.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_or_revoked_key_answers_401(api: Api) -> None:
    response = await api.http.get("/v1/decisions", headers={"X-API-Key": "tfwk_nope"})
    assert response.status_code == 401
    key, secret = await api.keys.create("temp", "read")
    assert (await api.http.get("/v1/decisions", headers={"X-API-Key": secret})).status_code == 200
    await api.keys.revoke(key.key_id)
    assert (await api.http.get("/v1/decisions", headers={"X-API-Key": secret})).status_code == 401


async def test_a_read_key_cannot_verify_or_purge(api: Api) -> None:
    assert (await api.http.get("/v1/verify", headers=api.as_reader())).status_code == 403
    response = await api.http.post("/v1/purge?before=0", headers=api.as_reader())
    assert response.status_code == 403


async def test_filters_narrow_the_list(api: Api) -> None:
    async def ids(**params: str) -> int:
        response = await api.http.get("/v1/decisions", params=params, headers=api.as_reader())
        assert response.status_code == 200, response.text
        return len(response.json()["items"])

    assert await ids() == 4
    assert await ids(actor=BOB) == 1
    assert await ids(conversation="19:other@thread.v2") == 1
    assert await ids(action="message.edit") == 1
    assert await ids(verdict="block") == 1
    assert await ids(rule="No edits abroad") == 1
    assert await ids(since=str(time.time() - 150)) == 2
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 250))
    assert await ids(until=iso) == 1


async def test_a_bad_filter_value_is_refused_with_422(api: Api) -> None:
    for params in ({"verdict": "maybe"}, {"since": "yesterday"}, {"limit": "0"},
                   {"since": "nan"}, {"until": "inf"}, {"since": "1e999"}, {"until": "-5"}):
        response = await api.http.get("/v1/decisions", params=params, headers=api.as_reader())
        assert response.status_code == 422, params
    response = await api.http.get("/v1/counts", params={"since": "NaN"},
                                  headers=api.as_reader())
    assert response.status_code == 422
    assert "since: not a time" in response.text


async def test_the_cursor_walks_every_record_once(api: Api) -> None:
    seen: list[str] = []
    params: dict[str, str] = {"limit": "3"}
    while True:
        page = (await api.http.get("/v1/decisions", params=params, headers=api.as_reader())).json()
        seen += [item["decision_id"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == 4 == len(set(seen))


async def test_one_record_by_id_carries_its_chain_fields_and_unknown_ids_are_404(
    api: Api,
) -> None:
    listed = (await api.http.get("/v1/decisions", headers=api.as_reader())).json()["items"]
    decision_id = listed[0]["decision_id"]
    response = await api.http.get(f"/v1/decisions/{decision_id}", headers=api.as_reader())
    assert response.status_code == 200
    body = response.json()
    assert body["decision_id"] == decision_id and len(body["hash"]) == 64
    assert body["chain"] == "main" and body["chain_seq"] == 4
    missing = await api.http.get("/v1/decisions/01NOPE", headers=api.as_reader())
    assert missing.status_code == 404


async def test_counts_per_rule_and_verdict(api: Api) -> None:
    response = await api.http.get("/v1/counts", headers=api.as_reader())
    counts = response.json()
    assert counts["total"] == 4
    assert counts["by_verdict"] == {"allow": 3, "block": 1}
    assert {"rule": "No edits abroad", "decision": "block", "count": 1} in counts["by_rule"]


async def test_the_csv_export_parses_back_and_defuses_formulas(api: Api) -> None:
    response = await api.http.get("/v1/export.csv", headers=api.as_reader())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 4
    assert {row["decision"] for row in rows} == {"allow", "block"}
    assert "'Log =SUM(A1)" not in {row["rules"] for row in rows}  # no leading '=' here
    assert all(not row["rules"].startswith("=") for row in rows)
    assert rows[0]["actor_email"] == "alice@firm.example"


async def test_the_json_lines_export_has_one_record_per_line(api: Api) -> None:
    response = await api.http.get(
        "/v1/export.jsonl", params={"verdict": "allow"}, headers=api.as_reader()
    )
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert len(lines) == 3 and all(line["decision"] == "allow" for line in lines)


async def test_admin_verify_reports_a_tampered_record_and_is_itself_logged(api: Api) -> None:
    response = await api.http.get("/v1/verify", headers=api.as_admin())
    assert response.json() == [
        {"chain": "main", "ok": True, "checked": 4, "broken_seq": None, "broken_id": None,
         "problem": None}
    ]  # fmt: skip
    await api.archive.decisions.update_one({"chain_seq": 3}, {"$set": {"decision": "allow"}})
    [report] = (await api.http.get("/v1/verify", headers=api.as_admin())).json()
    assert not report["ok"] and report["broken_seq"] == 3
    logged = [entry async for entry in api.archive.admin_log.find({"action": "verify"})]
    assert len(logged) == 2 and "admin" in logged[0]["who"]


async def test_admin_purge_removes_old_records_and_is_logged(api: Api) -> None:
    response = await api.http.post(
        "/v1/purge", params={"before": str(time.time() - 150)}, headers=api.as_admin()
    )
    assert response.json() == {"removed": 2}
    [report] = (await api.http.get("/v1/verify", headers=api.as_admin())).json()
    assert report["ok"] and report["checked"] == 2
    assert await api.archive.admin_log.count_documents({"action": "purge"}) == 1
    entries = (await api.http.get("/v1/admin-log", headers=api.as_admin())).json()
    assert [entry["action"] for entry in entries] == ["verify", "purge"]  # newest first
    assert entries[1]["detail"]["removed"] == 2 and "admin" in entries[1]["who"]
    assert (await api.http.get("/v1/admin-log", headers=api.as_reader())).status_code == 403


async def test_anonymous_reads_work_only_when_allowed_and_never_for_admin(
    mongo: tuple[AsyncMongoClient[dict[str, Any]], str],
) -> None:
    open_api = await serve(mongo, allow_anonymous=True)
    try:
        assert (await open_api.http.get("/v1/decisions")).status_code == 200
        assert (await open_api.http.get("/v1/verify")).status_code == 401
    finally:
        await open_api.http.aclose()


async def test_the_openapi_document_lists_every_route(api: Api) -> None:
    paths = (await api.http.get("/openapi.json")).json()["paths"]
    expected = {
        "/v1/decisions",
        "/v1/decisions/{decision_id}",
        "/v1/counts",
        "/v1/export.csv",
        "/v1/export.jsonl",
        "/v1/verify",
        "/v1/purge",
        "/v1/admin-log",
    }
    assert expected <= set(paths)


async def test_a_tampered_record_is_still_served_as_stored(api: Api) -> None:
    await api.archive.decisions.update_one({"chain_seq": 1}, {"$set": {"decision": "maybe"}})
    listed = await api.http.get("/v1/decisions", headers=api.as_reader())
    assert listed.status_code == 200
    assert "maybe" in {item["decision"] for item in listed.json()["items"]}
