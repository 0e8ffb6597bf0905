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

from services.decider.conditions import Condition, unknown_facts
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

    def test(self, facts: Facts) -> tuple[str, ...] | None:
        """None when the rule does not match; else the facts it assumed."""
        conditions = self.conditions
        if len(conditions) == 1:  # most steps: one call, no list
            outcome = conditions[0](facts)
            if outcome is True:
                return self.assumed
            if outcome is False:
                return None
        extra = unknown_facts(conditions, facts)
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


PlanKey = tuple[Any, Any, Any, Any]


@dataclass
class Planner:
    """The memo of plans for one rule set."""

    candidates: dict[Any, tuple[Rule, ...]]
    rules: tuple[Rule, ...]
    plans: dict[PlanKey, tuple[tuple[Step, ...], bool]] = field(default_factory=dict)
    actor_plans: dict[tuple[PlanKey, Principal | None], tuple[Step, ...]] = field(
        default_factory=dict
    )

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
            planned = self.plans[key] = self._plan(facts)
        steps, by_actor = planned
        if not by_actor:
            return steps
        actor_key = (key, facts.actor if facts.actor_known else None)
        found = self.actor_plans.get(actor_key)
        if found is None:
            if len(self.actor_plans) >= MAX_ACTOR_PLANS:
                self.actor_plans.clear()
            found = tuple(s for s in (step.for_actor(facts) for step in steps) if s is not None)
            self.actor_plans[actor_key] = found
        return found

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
