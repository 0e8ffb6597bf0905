"""Planning: the rules that can apply to one kind of event, with what can be known in
advance already answered.

Two memo levels, both bounded and both pure functions of their keys:

1. per (action, conversation type, location, federated): the candidate rules with
   their static conditions answered; rules those answers rule out are gone;
2. per actor on top of that: actor conditions answered, and each wall reduced to the
   opposite sides of the sides the actor is on.

The hot path then tests only what depends on the rest of the event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.decider.conditions import Condition, TextMatches, unknown_facts
from services.decider.facts import Facts, Principal

if TYPE_CHECKING:
    from services.decider.rules import Rule

MAX_PLANS = 4096
MAX_ACTOR_PLANS = 65536


@dataclass(frozen=True, slots=True)
class Step:
    """A rule as planned: ``assumed`` lists planned facts that were unknown;
    ``conditions`` remain to test; ``actor_conditions`` wait for the actor plan."""

    rule: Rule
    conditions: tuple[Condition, ...]
    assumed: tuple[str, ...]
    actor_conditions: tuple[Condition, ...] = ()
    variants: dict[tuple[Any, ...], Step | None] = field(default_factory=dict, compare=False)
    # The condition of a step that has only one (most do), and the two of a step that
    # has two, for the matcher's fast paths.
    single: Condition | None = field(init=False, compare=False)
    pair: tuple[Condition, Condition] | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        count = len(self.conditions)
        object.__setattr__(self, "single", self.conditions[0] if count == 1 else None)
        object.__setattr__(self, "pair", self.conditions if count == 2 else None)

    def test(self, facts: Facts) -> tuple[str, ...] | None:
        """None when the rule does not match; else the facts it assumed."""
        extra = unknown_facts(self.conditions, facts)
        if extra is None:
            return None
        if not extra:
            return self.assumed
        return (*self.assumed, *extra) if self.rule.matches_on_unknown else None

    def for_actor(self, facts: Facts) -> Step | None:
        """This step for the event's actor; None when the actor rules the rule out."""
        if not self.actor_conditions:
            return self
        assumed: list[str] = []
        remaining: list[Condition] = []
        for condition in self.actor_conditions:
            outcome = condition.for_actor(facts)
            if outcome is False:
                return None
            if outcome is None:
                assumed.append(condition.unknown_fact(facts))
            elif outcome is not True:
                remaining.append(outcome)
        key = (tuple(assumed), tuple(map(id, remaining)))
        if key in self.variants:
            return self.variants[key]
        variant = None
        if not assumed or self.rule.matches_on_unknown:
            variant = Step(self.rule, (*remaining, *self.conditions), (*self.assumed, *assumed))
        self.variants[key] = variant
        return variant


class TextGate:
    """The text conditions of a plan's text-only steps, asked together: when the
    message has none of their words and the shared screen finds none of their
    patterns, every one of them is false and the steps are skipped at once.

    A few keywords are looked for as plain substrings of the folded text (a word is
    also a substring, so nothing is missed); many, against the text's word set.
    """

    __slots__ = ("headless", "probes", "screen", "words")

    MAX_PROBES = 24

    def __init__(self, texts: list[TextMatches]) -> None:
        words: set[str] = set()
        for text in texts:
            words |= text.whole_words
            if text.phrases:
                words |= text.heads
        self.words = frozenset(words)
        self.probes = tuple(sorted(words)) if len(words) <= self.MAX_PROBES else None
        self.headless = any(t.headless for t in texts)
        screens = {t.screen for t in texts if t.regex is not None}
        self.screen = screens.pop() if screens else None

    @classmethod
    def of(cls, texts: list[TextMatches]) -> TextGate | None:
        """The gate for these conditions; None when they cannot share one (a pattern
        outside the shared screen)."""
        if not texts:
            return None
        if any(t.regex is not None and t.screen is None for t in texts):
            return None
        if len({t.screen for t in texts if t.regex is not None}) > 1:
            return None
        return cls(texts)

    def open(self, facts: Facts) -> bool:
        """False only when every gated condition is certainly false for this event
        (see :meth:`TextMatches.__call__`)."""
        event = facts.event
        body = event.body
        if body.parse_error or event.body_truncated or self.headless:
            return True
        if not body.text:
            return False
        if self.probes is None:
            if not self.words.isdisjoint(facts.words):
                return True
        else:
            folded = facts.folded_text
            for probe in self.probes:
                if probe in folded:
                    return True
        return self.screen is not None and facts.screened(self.screen)


@dataclass(frozen=True, slots=True)
class Program:
    """The steps to test for one kind of event (and actor), with the text-only steps
    left out in ``textless`` for events the gate shuts."""

    steps: tuple[Step, ...]
    textless: tuple[Step, ...]
    gate: TextGate | None

    @classmethod
    def of(cls, steps: tuple[Step, ...]) -> Program:
        gated = [
            s
            for s in steps
            if len(s.conditions) == 1
            and not s.actor_conditions
            and isinstance(s.conditions[0], TextMatches)
        ]
        gate = TextGate.of([s.conditions[0] for s in gated])  # type: ignore[misc]
        if gate is None:
            return cls(steps, steps, None)
        skipped = {id(s) for s in gated}
        return cls(steps, tuple(s for s in steps if id(s) not in skipped), gate)

    def for_event(self, facts: Facts) -> tuple[Step, ...]:
        gate = self.gate
        if gate is None or gate.open(facts):
            return self.steps
        return self.textless


PlanKey = tuple[Any, Any, Any, Any]


@dataclass
class Planner:
    """The memo of plans for one rule set."""

    candidates: dict[Any, tuple[Rule, ...]]
    rules: tuple[Rule, ...]
    plans: dict[PlanKey, tuple[Program, bool]] = field(default_factory=dict)
    actor_plans: dict[tuple[PlanKey, Principal | None], Program] = field(default_factory=dict)

    def plan(self, facts: Facts) -> tuple[Step, ...]:
        event = facts.event
        conversation = event.conversation
        kind = conversation.type if conversation is not None else None
        key = (event.action, kind, event.location, event.federated)
        planned = self.plans.get(key)
        if planned is None:
            if len(self.plans) >= MAX_PLANS:
                self.plans.clear()
                self.actor_plans.clear()
            steps, by_actor = self._plan(facts)
            planned = self.plans[key] = (Program.of(steps), by_actor)
        program, by_actor = planned
        if by_actor:
            actor_key = (key, facts.actor if facts.actor_known else None)
            found = self.actor_plans.get(actor_key)
            if found is None:
                if len(self.actor_plans) >= MAX_ACTOR_PLANS:
                    self.actor_plans.clear()
                mine = (step.for_actor(facts) for step in program.steps)
                found = Program.of(tuple(s for s in mine if s is not None))
                self.actor_plans[actor_key] = found
            program = found
        return program.for_event(facts)

    def _plan(self, facts: Facts) -> tuple[tuple[Step, ...], bool]:
        steps = []
        for rule in self.candidates.get(facts.event.action, self.rules):
            assumed: list[str] = []
            dynamic: list[Condition] = []
            by_actor: list[Condition] = []
            possible = True
            for condition in rule.conditions:
                if condition.actor_only:
                    by_actor.append(condition)
                    continue
                if not condition.static:
                    dynamic.append(condition)
                    continue
                outcome = condition(facts)
                if outcome is False:
                    possible = False
                    break
                if outcome is None:
                    assumed.append(condition.unknown_fact(facts))
            if possible and (not assumed or rule.matches_on_unknown):
                steps.append(Step(rule, tuple(dynamic), tuple(assumed), tuple(by_actor)))
        return tuple(steps), any(step.actor_conditions for step in steps)
