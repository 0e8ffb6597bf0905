"""The project's acceptance test: the shared scenario through the full real stack.

``cases/scenario.jsonl`` is replayed by the client simulator through the real proxy
(mitmproxy), resolver, decider and audit (real nats-server and SecantusDB), with the
Teams simulator serving ``cases/org.yaml`` and the rules imported from the 2021
``cases/rules.xml``. Every request must end exactly as ``cases/expected.jsonl`` says.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import SHARED
from tfw.sim.demo_run import Outcome, outcomes, prepare_rules, replay, start_services
from tfw.sim.org import load_org
from tfw.sim.scenario import load_scenario
from tfw.sim.teams import TeamsSimulator
from tfw.stack import Stack

pytestmark = pytest.mark.e2e

EXPECTED_FILE = SHARED / "cases" / "expected.jsonl"


def _expected() -> list[dict[str, Any]]:
    if not EXPECTED_FILE.is_file():
        return [{"id": "(cases missing)"}]
    lines = EXPECTED_FILE.read_text(encoding="utf-8").splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


EXPECTED = _expected()


@pytest.fixture(scope="module")
def outcomes_by_id(
    infra: Stack, shared_cases: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Outcome]]:
    data = tmp_path_factory.mktemp("acceptance")
    org = load_org(shared_cases / "org.yaml")
    requests = load_scenario(shared_cases / "scenario.jsonl")
    rules = prepare_rules(shared_cases / "rules.xml", data / "rules")
    prefix = "acc" + secrets.token_hex(4)
    database = f"tfw_{prefix}"
    common = {"TFW_SUBJECT_PREFIX": prefix, "TFW_DATABASE": database}
    assert infra.mongodb_uri
    stack = Stack(data, log=infra.log, nats_url=infra.nats_url, mongodb_uri=infra.mongodb_uri)
    with TeamsSimulator(org) as simulator, stack:
        start_services(stack, simulator.port, rules, common)
        results = replay(org, requests, stack, simulator)
        found = outcomes(results, infra.mongodb_uri, database)
    yield {outcome.result.id: outcome for outcome in found}


def _problems(expected: dict[str, Any], outcome: Outcome) -> list[str]:
    result, record = outcome.result, outcome.record
    if result.error:
        return [f"the client got no answer: {result.error}"]
    problems = []
    if expected["verdict"] == "block":
        if result.received:
            problems.append("blocked, yet the request reached the Teams simulator")
        if result.status is None or result.status < 400:
            problems.append(f"blocked, yet the client saw status {result.status}")
    elif not result.received:
        problems.append(f"allowed, yet the simulator never received it (status {result.status})")
    if record is None:
        problems.append(f"no decision record archived (decision id {result.decision_id})")
        return problems
    if record["decision"] != expected["verdict"]:
        problems.append(f"verdict {record['decision']!r}, expected {expected['verdict']!r}")
    if record["action"] != expected["action"]:
        problems.append(f"action {record['action']!r}, expected {expected['action']!r}")
    if "conversation_type" in expected:
        actual = (record.get("conversation") or {}).get("type")
        if actual != expected["conversation_type"]:
            problems.append(
                f"conversation type {actual!r}, expected {expected['conversation_type']!r}"
            )
    if "location" in expected and record.get("location") != expected["location"]:
        problems.append(f"location {record.get('location')!r}, expected {expected['location']!r}")
    matched = {rule["name"] for rule in record.get("rules") or []}
    missing = [name for name in expected.get("rules", []) if name not in matched]
    if missing:
        problems.append(f"rules {missing} did not match (matched: {sorted(matched)})")
    unwanted = [name for name in expected.get("not_rules", []) if name in matched]
    if unwanted:
        problems.append(f"rules {unwanted} matched but must not")
    received = {k.lower(): v for k, v in (result.received_headers or {}).items()}
    for name, value in (expected.get("headers") or {}).items():
        if received.get(name.lower()) != value:
            problems.append(f"header {name}: simulator got {received.get(name.lower())!r}, "
                            f"expected {value!r}")
    if "reason" in expected and expected["reason"] not in str(record.get("reason") or ""):
        problems.append(f"reason {record.get('reason')!r} lacks {expected['reason']!r}")
    if "has_files" in expected and record.get("has_files") != expected["has_files"]:
        problems.append(f"has_files {record.get('has_files')!r}, expected {expected['has_files']}")
    return problems


@pytest.mark.parametrize("expected", EXPECTED, ids=[case["id"] for case in EXPECTED])
def test_each_scenario_request_ends_as_the_cases_expect(
    outcomes_by_id: dict[str, Outcome], expected: dict[str, Any]
) -> None:
    assert expected["id"] in outcomes_by_id, f"{expected['id']} was not replayed"
    problems = _problems(expected, outcomes_by_id[expected["id"]])
    assert not problems, f"{expected['id']}: " + "; ".join(problems)


def test_every_scenario_request_has_an_expectation(outcomes_by_id: dict[str, Outcome]) -> None:
    assert set(outcomes_by_id) == {case["id"] for case in EXPECTED}


def test_the_check_reports_a_block_that_reached_teams_and_a_wrong_rule() -> None:
    from tfw.sim.client import ReplayResult

    result = ReplayResult("x", "POST", "https://t", "alice", status=201, received=True)
    record = {"decision": "allow", "action": "message.send", "rules": [{"name": "Other"}]}
    expected = {"id": "x", "verdict": "block", "action": "message.send", "rules": ["Wall"]}
    problems = _problems(expected, Outcome(result, record))
    assert "blocked, yet the request reached the Teams simulator" in problems
    assert "verdict 'allow', expected 'block'" in problems
    assert any("rules ['Wall'] did not match" in problem for problem in problems)
