"""``tfw rules``: import-xml, validate, test, explain and schema, as an operator runs them
(``push`` runs against a real nats-server in tests/decider/test_service.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from services.decider.rules import compile_rules
from services.decider.schema import SCHEMA
from tfw.cli import main as tfw

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "rules" / "firm.yaml"


def test_import_xml_writes_yaml_and_prints_the_report(
    shared_cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "upstream.yaml"
    source = shared_cases / "upstream" / "teamsfirewall.config"
    assert tfw(["rules", "import-xml", str(source), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Problems (3)" in printed
    assert "%INSERT TENANT ID HERE%" in printed and "two Param1" in printed
    assert len(compile_rules(out.read_text()).rules) == 4


def test_import_xml_refuses_a_file_that_is_not_xml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<Settings><Rules>")
    assert tfw(["rules", "import-xml", str(bad)]) == 1
    assert "not XML" in capsys.readouterr().err


def test_validate_names_file_line_and_column_of_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    when: {actors: ['group:nope']}\n    then: [block]\n")
    assert tfw(["rules", "validate", str(bad)]) == 1
    assert f"{bad}:3:21:" in capsys.readouterr().err


def test_validate_accepts_the_example_and_a_2021_file(
    shared_cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tfw(["rules", "validate", str(EXAMPLE)]) == 0
    assert tfw(["rules", "validate", str(shared_cases / "rules.xml")]) == 0
    assert capsys.readouterr().out.count("valid, version") == 2


def test_the_example_rule_tests_all_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert tfw(["rules", "test", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and " 0 failed" in out


def test_a_failing_rule_test_fails_the_command_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules: [{name: no sends, when: {actions: [message.send]}, then: [block]}]\n"
        "tests:\n"
        "  - name: wrong on purpose\n"
        "    event: {action: message.send, actor: a@firm.example}\n"
        "    expect: {decision: allow}\n"
        "  - name: right\n"
        "    event: {action: message.edit, actor: a@firm.example}\n"
        "    expect: {decision: allow, not_rules: [no sends]}\n"
    )
    assert tfw(["rules", "test", str(rules)]) == 1
    out = capsys.readouterr().out
    assert "FAIL wrong on purpose" in out and "decision block, expected allow" in out
    assert "ok   right" in out and "1 passed, 1 failed" in out


def test_a_rule_file_without_tests_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("rules: []\n")
    assert tfw(["rules", "test", str(rules)]) == 1
    assert "no rule tests" in capsys.readouterr().err


def test_explain_shows_which_conditions_failed_and_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = ROOT / "examples" / "rules" / "events" / "alice-to-bob.json"
    assert tfw(["rules", "explain", str(EXAMPLE), str(event)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: allow")
    assert "block lifted by exception 'Deal team Q4 crossing'" in out
    assert "no  location: location is internal; the rule wants external" in out


def test_explain_accepts_a_full_enriched_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {
        "id": "01X",
        "time": 1764493200.0,
        "interceptor": "i",
        "method": "POST",
        "host": "h",
        "path": "/",
        "action": "message.edit",
        "location": "external",
        "credential": {"status": "ok"},
        "actor": {"mri": "8:orgid:a", "email": "alice@firm.example", "tenant_id": "x"},
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert tfw(["rules", "explain", str(EXAMPLE), str(path)]) == 0
    out = capsys.readouterr().out
    assert "verdict: block" in out
    assert "'No edits or deletes in other tenants': MATCHED" in out


def test_the_published_schema_is_the_one_the_compiler_uses(tmp_path: Path) -> None:
    published = json.loads((ROOT / "docs" / "rules.schema.json").read_text())
    assert published == SCHEMA
    out = tmp_path / "schema.json"
    assert tfw(["rules", "schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == SCHEMA


def test_the_documentation_examples_compile() -> None:
    text = (ROOT / "docs" / "rules.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    assert len(blocks) >= 5
    for block in blocks:
        document = yaml.safe_load(block)
        if isinstance(document, dict) and ("rules" in document or "walls" in document):
            compile_rules(block)
