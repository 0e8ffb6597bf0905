"""The committed decision record schema and its document match the model."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson

from services.audit.schema import SCHEMA_ID, schema_json, schema_markdown, undocumented
from services.common.contracts import Decision
from tests.audit.support import record

DOCS = Path(__file__).resolve().parents[2] / "docs"
REGENERATE = "run: tfw audit schema > docs/decision-record.schema.json"


def test_the_committed_json_schema_is_the_one_the_model_generates() -> None:
    committed = (DOCS / "decision-record.schema.json").read_text(encoding="utf-8")
    assert committed == schema_json(), REGENERATE


def test_the_committed_field_document_is_the_one_the_model_generates() -> None:
    committed = (DOCS / "decision-record.md").read_text(encoding="utf-8")
    assert committed == schema_markdown(), REGENERATE.replace("schema >", "schema --markdown >")


def test_every_field_of_the_record_is_documented() -> None:
    assert undocumented() == []


def test_a_chained_record_validates_against_the_schema() -> None:
    schema = orjson.loads(schema_json())
    assert schema["$id"] == SCHEMA_ID
    item = record(decision=Decision.BLOCK, rules=("Wall",)).model_dump(mode="json", by_alias=True)
    item.update(chain="main", chain_seq=1, prev_hash="0" * 64, hash="f" * 64)
    jsonschema.Draft202012Validator(schema).validate(item)
    item["decision"] = "maybe"
    assert not jsonschema.Draft202012Validator(schema).is_valid(item)


def test_no_field_of_the_record_can_hold_a_credential() -> None:
    schema = orjson.loads(schema_json())
    names = list(schema["properties"])
    for definition in schema["$defs"].values():
        names += list(definition.get("properties", {}))
    suspicious = [
        name
        for name in names
        if any(word in name.lower() for word in ("token", "authorization", "secret", "cookie"))
    ]
    assert suspicious == []
