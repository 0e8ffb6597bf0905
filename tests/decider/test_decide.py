"""How a verdict is reached: order, default, monitor mode, exceptions, unresolved
context, unidentified actors, headers, and the record that goes with it."""

from __future__ import annotations

import textwrap
from typing import Any

import orjson
import pytest

from services.common.contracts import Decision, DecisionRecord, Verdict, decode, encode
from services.decider.decide import decide
from services.decider.explain import event_from_spec
from services.decider.rules import RuleSet, compile_rules

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
PARTNER = "9a3f1e55-7c2d-4e8b-a1f0-3b6c9d2e4f33"
ALICE = {"email": "alice@firm.example"}
BOB = "bob@firm.example"
CLIENT = "4c7e2a99-5b1d-4a3c-9e8f-7d0a1b2c3d44"


def rules_of(text: str) -> RuleSet:
    return compile_rules(f"internal_tenants: [{FIRM}]\n" + textwrap.dedent(text))


def run(rules: RuleSet, **event: Any) -> tuple[Verdict, DecisionRecord]:
    return decide(event_from_spec(event, rules), rules)


def names(verdict: Any) -> list[str]:
    return [rule.name for rule in verdict.rules]


def test_every_matched_rule_is_listed_and_any_enforced_block_blocks() -> None:
    rules = rules_of("""
        rules:
          - {name: log it, then: [{log: seen}]}
          - {name: tag it, then: [{add_header: {X-Tag: one}}]}
          - {name: stop it, when: {actors: [alice@firm.example]}, then: [block]}
    """)
    verdict, record = run(rules, actor=ALICE)
    assert verdict.decision is Decision.BLOCK
    assert names(verdict) == ["log it", "tag it", "stop it"]
    assert verdict.headers == {}
    assert "stop it" in orjson.loads(verdict.body)["message"]
    assert record.rules == verdict.rules and record.decision is Decision.BLOCK


def test_headers_of_matched_rules_are_added_when_the_request_is_allowed() -> None:
    rules = rules_of("""
        rules:
          - {name: tag, then: [{add_header: {X-Teams-Message-Type: MEETINGCHAT}}]}
          - {name: tag 2, then: [{add_header: {X-Other: "2"}}, {log: x}]}
    """)
    verdict, record = run(rules, actor=ALICE)
    assert verdict.decision is Decision.ALLOW
    assert verdict.headers == {"X-Teams-Message-Type": "MEETINGCHAT", "X-Other": "2"}
    assert record.headers_added == verdict.headers


def test_an_allow_rule_ends_evaluation_so_later_blocks_do_not_apply() -> None:
    rules = rules_of("""
        rules:
          - {name: compliance may, when: {actors: ['*@compliance.firm.example']}, then: [allow]}
          - {name: no sends, then: [block]}
    """)
    allowed, _ = run(rules, actor={"email": "c@compliance.firm.example"})
    blocked, _ = run(rules, actor=ALICE)
    assert allowed.decision is Decision.ALLOW and names(allowed) == ["compliance may"]
    assert blocked.decision is Decision.BLOCK and names(blocked) == ["no sends"]


def test_an_earlier_block_still_blocks_despite_a_later_allow() -> None:
    rules = rules_of("""
        rules:
          - {name: no sends, then: [block]}
          - {name: allow all, then: [allow]}
    """)
    assert run(rules, actor=ALICE)[0].decision is Decision.BLOCK


@pytest.mark.parametrize(("default", "decision"), [("allow", "allow"), ("block", "block")])
def test_the_default_verdict_applies_when_no_rule_blocks_or_allows(
    default: str, decision: str
) -> None:
    rules = rules_of(f"default: {default}\nrules: [{{name: log, then: [{{log: x}}]}}]\n")
    verdict, _ = run(rules, actor=ALICE)
    assert verdict.decision.value == decision
    if decision == "block":
        assert "default is block" in (verdict.reason or "")


def test_a_default_block_yields_to_an_explicit_allow() -> None:
    rules = rules_of("default: block\nrules: [{name: ok, then: [allow]}]\n")
    assert run(rules, actor=ALICE)[0].decision is Decision.ALLOW


def test_a_monitor_rule_records_a_would_block_and_lets_the_request_pass() -> None:
    rules = rules_of("rules: [{name: trial, mode: monitor, then: [block]}]\n")
    verdict, record = run(rules, actor=ALICE)
    assert verdict.decision is Decision.ALLOW
    assert verdict.rules[0].mode.value == "monitor" and "block" in verdict.rules[0].actions
    assert record.would_block is True


def test_an_enforced_block_without_monitor_rules_is_not_a_would_block() -> None:
    rules = rules_of("rules: [{name: real, then: [block]}]\n")
    assert run(rules, actor=ALICE)[1].would_block is False


EXCEPTION_RULES = """
    groups:
      research: {people: [alice@firm.example]}
      trading: {people: [bob@firm.example]}
    walls: [{name: Wall, between: [research, trading]}]
    exceptions:
      - name: Deal team
        rules: [Wall]
        when: {participants: {any: ['dealroom@firm.example']}}
        until: "2026-12-31T23:59:59Z"
        reason: approved by compliance, ticket C-1
"""


def test_an_active_exception_lifts_the_block_and_says_so() -> None:
    rules = rules_of(EXCEPTION_RULES)
    verdict, _ = run(
        rules, actor=ALICE, participants=[BOB, "dealroom@firm.example"], time="2026-12-01T10:00:00Z"
    )
    assert verdict.decision is Decision.ALLOW
    assert names(verdict) == ["Wall", "Deal team"]
    assert "excepted" in verdict.rules[0].actions and "block" not in verdict.rules[0].actions
    assert "until 2026-12-31T23:59:59Z" in (verdict.rules[1].message or "")


def test_an_expired_exception_no_longer_lifts_the_block() -> None:
    rules = rules_of(EXCEPTION_RULES)
    verdict, _ = run(
        rules, actor=ALICE, participants=[BOB, "dealroom@firm.example"], time="2027-01-01T00:00:00Z"
    )
    assert verdict.decision is Decision.BLOCK
    assert names(verdict) == ["Wall"]


def test_an_exception_whose_conditions_do_not_hold_lifts_nothing() -> None:
    rules = rules_of(EXCEPTION_RULES)
    verdict, _ = run(rules, actor=ALICE, participants=[BOB], time="2026-12-01T10:00:00Z")
    assert verdict.decision is Decision.BLOCK


def test_an_exception_never_applies_on_unresolved_context() -> None:
    rules = rules_of(EXCEPTION_RULES)
    verdict, _ = run(
        rules,
        actor=ALICE,
        participants=[],
        actor_is_participant=False,
        context="unresolved",
        time="2026-12-01T10:00:00Z",
    )
    assert verdict.decision is Decision.BLOCK
    assert verdict.rules[0].assumed == ["participants"]


UNRESOLVED = """
    rules:
      - {name: no client-co, when: {participants: ['*@client-co.example']}, then: [block]}
      - {name: log groups, when: {conversation_types: [group]}, then: [{log: g}]}
      - {name: federated, when: {federated: true}, then: [block], unresolved: ignore}
      - {name: tag, when: {federated: false}, then: [{add_header: {X-F: "no"}}],
         unresolved: match}
"""


def test_on_unresolved_context_a_blocking_rule_that_needs_the_fact_matches() -> None:
    rules = rules_of(UNRESOLVED)
    event = event_from_spec({"actor": ALICE, "conversation": "unknown"}, rules)
    event.context.source = event.context.source.UNRESOLVED
    event.participants = []
    event.federated = None
    verdict, record = decide(event, rules)
    assert verdict.decision is Decision.BLOCK
    assert "no client-co" in names(verdict)
    assert verdict.rules[0].assumed == ["participants"]
    assert record.rules[0].assumed == ["participants"]


def test_on_unresolved_context_a_logging_rule_does_not_match_by_default() -> None:
    rules = rules_of(UNRESOLVED)
    event = event_from_spec({"actor": ALICE, "conversation": "unknown"}, rules)
    event.context.source = event.context.source.UNRESOLVED
    event.federated = None
    assert "log groups" not in names(decide(event, rules)[0])


def test_the_unresolved_behaviour_can_be_set_per_rule() -> None:
    rules = rules_of(UNRESOLVED)
    event = event_from_spec({"actor": ALICE}, rules)
    event.federated = None
    listed = names(decide(event, rules)[0])
    assert "federated" not in listed  # ignore: a blocking rule that opted out
    assert "tag" in listed  # match: a non-blocking rule that opted in


def test_the_same_rules_on_resolved_context_decide_on_the_facts() -> None:
    rules = rules_of(UNRESOLVED)
    verdict, _ = run(rules, actor=ALICE, participants=[BOB], conversation="group")
    assert verdict.decision is Decision.ALLOW
    assert names(verdict) == ["log groups", "tag"]


@pytest.mark.parametrize("status", ["missing", "unreadable"])
def test_an_unidentified_actor_is_blocked_failing_closed(status: str) -> None:
    rules = rules_of("rules: [{name: log, then: [{log: x}]}]\n")
    verdict, record = run(rules, credential=status)
    assert verdict.decision is Decision.BLOCK
    assert "the actor cannot be identified" in (verdict.reason or "")
    assert "fail closed" in (verdict.reason or "")
    assert record.reason == verdict.reason


def test_a_rule_set_may_evaluate_requests_of_unidentified_actors() -> None:
    rules = rules_of("unidentified_actor: evaluate\nrules: [{name: log, then: [{log: x}]}]\n")
    assert run(rules, credential="missing")[0].decision is Decision.ALLOW


def test_an_actor_rule_on_an_unidentified_actor_counts_as_matching_when_it_blocks() -> None:
    rules = rules_of(
        "unidentified_actor: evaluate\n"
        "rules: [{name: alice only, when: {not_actors: [alice@firm.example]}, then: [block]}]\n"
    )
    assert run(rules, credential="missing")[0].decision is Decision.BLOCK


def test_content_rules_block_an_unreadable_or_truncated_body() -> None:
    rules = rules_of("rules: [{name: words, when: {text: {keywords: [secret]}}, then: [block]}]\n")
    assert run(rules, actor=ALICE, parse_error="body is not JSON")[0].decision is Decision.BLOCK
    cut = run(rules, actor=ALICE, text="nothing here", body_truncated=True)[0]
    assert cut.decision is Decision.BLOCK
    assert run(rules, actor=ALICE, text="nothing here")[0].decision is Decision.ALLOW


def test_x_forwarded_for_is_added_to_allowed_requests_when_configured() -> None:
    rules = rules_of("x_forwarded_for: true\n")
    verdict, _ = run(rules, actor=ALICE, client_ip="10.1.2.3")
    assert verdict.headers == {"X-Forwarded-For": "10.1.2.3"}


def test_verdict_and_record_carry_the_rule_set_version_and_the_decision_id() -> None:
    rules = rules_of("rules: [{name: r, then: [{log: x}]}]\n")
    verdict, record = run(rules, actor=ALICE, id="01TESTDECISION")
    assert verdict.ruleset_version == record.ruleset_version == rules.version
    assert verdict.decision_id == record.decision_id == "01TESTDECISION"
    assert record.timings.decide_ms >= 0


def test_a_large_conversation_is_summarised_in_the_record() -> None:
    rules = rules_of("rules: []\n")
    people = [f"p{i}@firm.example" for i in range(120)] + [
        {"email": "erin@partner.example", "tenant_id": PARTNER}
    ]
    _, record = run(rules, actor=ALICE, participants=people)
    assert record.participant_count == 122
    assert record.participants_truncated and len(record.participants) == 50
    assert [p.email for p in record.external_participants] == ["erin@partner.example"]


def test_the_fast_built_verdict_and_record_equal_validated_copies() -> None:
    rules = rules_of(
        "rules: [{name: r, when: {participants: [bob@firm.example]}, then: [block]}]\n"
    )
    verdict, record = run(rules, actor=ALICE, participants=[BOB], files=["a.xlsx"])
    assert Verdict.model_validate(verdict.model_dump()) == verdict
    assert DecisionRecord.model_validate(record.model_dump()) == record
    for made in (verdict, record, record.timings):
        assert set(vars(made)) == set(type(made).model_fields), type(made).__name__
    assert decode(DecisionRecord, encode(record)) == record
    assert decode(Verdict, encode(verdict)).body == verdict.body


def test_people_being_added_count_as_participants_so_a_wall_sees_them() -> None:
    rules = rules_of("""
        rules:
          - name: nobody from client-co
            when: {actions: [member.add, chat.create], participants: {any: ['*@client-co.example']}}
            then: [block]
    """)
    frank = {"email": "frank@client-co.example", "tenant_id": CLIENT}
    added, _ = run(rules, actor=ALICE, action="member.add", participants=[BOB], targets=[frank])
    created, _ = run(rules, actor=ALICE, action="chat.create", targets=[frank])
    removed, _ = run(
        rules, actor=ALICE, action="member.remove", participants=[BOB], targets=[frank]
    )
    assert added.decision is Decision.BLOCK
    assert created.decision is Decision.BLOCK
    assert removed.decision is Decision.ALLOW
