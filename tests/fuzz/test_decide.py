"""Every request gets a verdict: any request a client can send, once understood by the
resolver (context unresolved, as when nothing can be looked up), is decided by the
shipped rule sets without an exception, and blocked when a blocking rule might apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from services.common.contracts import Decision, InterceptedRequest
from services.decider.decide import decide
from services.decider.legacy import import_xml
from services.decider.rules import RuleSet, compile_rules
from services.resolver.enrich import understand
from tests.fuzz.strategies import fuzz, requests

DEMO = Path(__file__).resolve().parents[2] / "tfw" / "demo_data"
FUZZ = fuzz(1)


def _rule_sets() -> dict[str, RuleSet]:
    imported, _ = import_xml((DEMO / "rules.xml").read_text(encoding="utf-8"))
    return {
        "yaml": compile_rules((DEMO / "rules.yaml").read_text(encoding="utf-8")),
        "xml": compile_rules(imported),
    }


RULE_SETS = _rule_sets()


@pytest.mark.parametrize("name", sorted(RULE_SETS))
@FUZZ
@given(request=requests)
def test_every_request_gets_a_verdict(name: str, request: InterceptedRequest) -> None:
    event, _, _ = understand(request)
    verdict, record = decide(event, RULE_SETS[name])
    assert verdict.decision in (Decision.ALLOW, Decision.BLOCK)
    assert verdict.decision_id == request.id == record.decision_id
    if verdict.decision is Decision.BLOCK:
        assert 400 <= verdict.status <= 599
        assert verdict.body
