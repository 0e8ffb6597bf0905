"""The 2021 XML import: both shared files, the report, and BLOCK never dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.decider.decide import decide
from services.decider.legacy import LegacyError, import_xml
from services.decider.rules import compile_rules
from tests.decider.cases import scenario_events


def _rules_xml(shared_cases: Path) -> str:
    return (shared_cases / "rules.xml").read_text()


def test_the_fixture_rules_import_with_every_rule_and_tenant(shared_cases: Path) -> None:
    output, report = import_xml(_rules_xml(shared_cases), "rules.xml")
    document = yaml.safe_load(output)
    assert document["internal_tenants"] == [
        "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11",
        "6e2d4c88-1a7b-4b5e-8c3f-2d9e7a0b5c22",
    ]
    assert [rule["name"] for rule in document["rules"]] == [
        "Research may not message Trading",
        "No edits or deletes in other tenants",
        "Nothing to client-co",
        "Log reactions",
        "Tag meeting sends",
        "No typing in private channels",
        "Log non-federated group chat sends",
        "Federated deletes",
    ]
    assert document["lifetimes"] == {
        "conversation_map_s": 600,
        "user_s": 18000,
        "token_purge_interval_s": 3600,
    }
    assert document["x_forwarded_for"] is False
    assert report.problems == []
    assert any("MaxAPIUserLookupThreads" in item for item in report.not_mapped)


def test_every_block_rule_of_the_fixture_survives_the_import(shared_cases: Path) -> None:
    output, _ = import_xml(_rules_xml(shared_cases))
    blocking = [r["name"] for r in yaml.safe_load(output)["rules"] if "block" in r["then"]]
    assert blocking == [
        "Research may not message Trading",
        "No edits or deletes in other tenants",
        "Nothing to client-co",
        "No typing in private channels",
        "Federated deletes",
    ]


def test_federated_false_and_event_codes_map_to_the_product_vocabulary(
    shared_cases: Path,
) -> None:
    rules = yaml.safe_load(import_xml(_rules_xml(shared_cases))[0])["rules"]
    by_name = {rule["name"]: rule["when"] for rule in rules}
    assert by_name["Log non-federated group chat sends"] == {
        "actions": ["message.send"],
        "conversation_types": ["group"],
        "federated": False,
    }
    assert by_name["Research may not message Trading"]["actions"] == [
        "message.send",
        "message.edit",
        "reaction.add",
        "reaction.remove",
    ]
    assert by_name["No typing in private channels"]["conversation_types"] == ["private_channel"]
    assert by_name["No edits or deletes in other tenants"]["location"] == "external"


def test_the_upstream_sample_imports_and_reports_its_two_known_faults(
    shared_cases: Path,
) -> None:
    text = (shared_cases / "upstream" / "teamsfirewall.config").read_text()
    output, report = import_xml(text)
    document = yaml.safe_load(output)
    problems = "\n".join(report.problems)
    assert "%INSERT TENANT ID HERE%" in problems
    assert "two Param1" in problems
    assert document["internal_tenants"] == []
    assert document["x_forwarded_for"] is True
    header_rule = document["rules"][3]
    assert header_rule["then"] == [{"add_header": {"X-Teams-Message-Type": "MEETINGCHAT"}}]
    assert [r["name"] for r in document["rules"] if "block" in r["then"]] == [
        "Block external actions",
        "Block and log userA from consoto.com conversations",
    ]


def test_a_rule_without_event_applies_to_every_2021_event_kind(shared_cases: Path) -> None:
    text = (shared_cases / "upstream" / "teamsfirewall.config").read_text()
    rule = yaml.safe_load(import_xml(text)[0])["rules"][0]
    assert rule["when"]["actions"] == [
        "message.send",
        "message.edit",
        "message.delete",
        "message.undelete",
        "reaction.add",
        "reaction.remove",
        "typing",
    ]


def test_the_imported_fixture_rules_give_every_expected_outcome(shared_cases: Path) -> None:
    rules = compile_rules(import_xml(_rules_xml(shared_cases))[0])
    failures = []
    for event, want in scenario_events(shared_cases):
        verdict, record = decide(event, rules)
        names = [rule.name for rule in verdict.rules]
        if verdict.decision.value != want["verdict"]:
            failures.append(f"{event.id}: {verdict.decision.value} ({verdict.reason})")
        failures += [f"{event.id}: {n} missing" for n in want["rules"] if n not in names]
        failures += [f"{event.id}: {n} matched" for n in want.get("not_rules", []) if n in names]
        for header, value in (want.get("headers") or {}).items():
            if verdict.headers.get(header) != value:
                failures.append(f"{event.id}: header {header} is {verdict.headers}")
        if "reason" in want and want["reason"] not in (verdict.reason or ""):
            failures.append(f"{event.id}: reason {verdict.reason!r}")
        assert record.rules == verdict.rules
        assert record.ruleset_version == rules.version
    assert failures == []


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (
            "<Settings><Rules><Rule><RuleName>x</RuleName><Conditions><Condition><Type>EVENT"
            "</Type><Value>MSGFOO</Value></Condition></Conditions><Actions><Action><Type>BLOCK"
            "</Type></Action></Actions></Rule></Rules></Settings>",
            "unknown event code",
        ),
        (
            "<Settings><Rules><Rule><RuleName>x</RuleName><Conditions><Condition><Type>WEATHER"
            "</Type><Value>RAIN</Value></Condition></Conditions><Actions><Action><Type>DROP"
            "</Type></Action></Actions></Rule></Rules></Settings>",
            "DROP read as BLOCK",
        ),
    ],
)
def test_an_unmappable_condition_leaves_the_block_in_place_and_is_reported(
    xml: str, expected: str
) -> None:
    output, report = import_xml(xml)
    rule = yaml.safe_load(output)["rules"][0]
    assert rule["then"][0] == "block"
    assert expected in "\n".join(report.problems + report.not_mapped)


def test_a_file_that_is_not_a_2021_configuration_is_refused_with_its_position() -> None:
    with pytest.raises(LegacyError, match="line 1"):
        import_xml("<Settings><Rules></Settings>")
    with pytest.raises(LegacyError, match="no <Settings> root"):
        import_xml("<Other/>")


def test_entity_declarations_are_refused() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Settings>&a;</Settings>'
    with pytest.raises(LegacyError, match="document type"):
        import_xml(bomb)
