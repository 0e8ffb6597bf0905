"""Planning is only a shortcut: planned matching gives exactly what testing every
condition of every rule gives, for every kind of event, actor and context."""

from __future__ import annotations

import random

from services.common.contracts import (
    Action,
    Actor,
    ContextSource,
    Conversation,
    ConversationType,
    Credential,
    CredentialStatus,
    EnrichedEvent,
    Location,
    Provenance,
)
from services.decider.bench import events, rule_source
from services.decider.conditions import TextMatches
from services.decider.decide import match
from services.decider.facts import Facts
from services.decider.rules import RuleSet, compile_rules


def unplanned(event: EnrichedEvent, rules: RuleSet) -> list[tuple[str, tuple[str, ...]]]:
    """Every rule's every condition, in order, stopping after an allow."""
    facts = Facts(event)
    found = []
    for rule in rules.rules:
        if rule.actions is not None and event.action not in rule.actions:
            continue
        assumed = rule.test(facts)
        if assumed is not None:
            found.append((rule.name, assumed))
            if rule.allow:
                break
    return found


def varied(seed: int, rules: RuleSet) -> list[EnrichedEvent]:
    """Bench events, varied in every fact the planner keys on, half of them aimed at
    one of the bench's text rules (its action, and text that may or may not match)."""
    rnd = random.Random(seed)
    texts = [
        (int(rule.name.split()[1]), rule.actions)
        for rule in rules.rules
        if rule.actions and any(isinstance(c, TextMatches) for c in rule.conditions)
    ]
    made = []
    for event in events(400, seed=seed):
        event.action = rnd.choice(list(Action))
        event.location = rnd.choice(list(Location))
        event.federated = rnd.choice([True, False, None])
        conversation_type = rnd.choice([*ConversationType, None])
        event.conversation = (
            None if conversation_type is None else Conversation(id="19:x", type=conversation_type)
        )
        if rnd.random() < 0.2:
            event.context = Provenance(source=ContextSource.UNRESOLVED, reason="test")
            event.participants = event.participants[: rnd.randrange(2)]
        if rnd.random() < 0.1:
            event.credential = Credential(status=CredentialStatus.UNREADABLE)
            event.actor = Actor()
        if rnd.random() < 0.2:
            event.actor = Actor(email=f"u{rnd.randrange(10)}-{rnd.randrange(20)}@firm.example")
        r, actions = rnd.choice(texts)
        if rnd.random() < 0.5:
            event.action = rnd.choice(sorted(actions))
        event.body.text = rnd.choice(
            [
                event.body.text,
                "",
                None,
                f"about SECRET{r}, see",
                f"we front run {r} today",
                f"we front ran {r}",
                f"isin{r}0042",
                f"ＩＳＩＮ{r}7",
            ]
        )
        event.body.parse_error = "unreadable" if rnd.random() < 0.05 else None
        event.body_truncated = rnd.random() < 0.05
        made.append(event)
    return made


def test_planned_matching_equals_testing_every_rule() -> None:
    rules = compile_rules(rule_source(200))
    checked = matched = 0
    for event in varied(3, rules) + varied(4, rules):
        assert [(r.name, a) for r, a in match(event, rules)] == unplanned(event, rules)
        checked += 1
        matched += bool(unplanned(event, rules))
    assert checked == 800 and matched > 100  # the comparison saw real matches


def test_a_wall_plan_is_reused_for_the_same_actor_and_differs_by_actor() -> None:
    rules = compile_rules(
        "groups:\n  a: {people: [a@firm.example]}\n  b: {people: [b@firm.example]}\n"
        "walls: [{name: W, between: [a, b]}]\n"
    )
    first = events(1)[0]
    first.actor = Actor(mri="8:orgid:1", email="a@firm.example")
    second = first.model_copy(deep=True)
    plan_a = rules.plan(Facts(first))
    assert rules.plan(Facts(second)) is plan_a
    second.actor = Actor(mri="8:orgid:2", email="c@firm.example")
    assert rules.plan(Facts(second)) == ()
