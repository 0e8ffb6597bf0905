"""The rule language: a YAML document validated against :data:`schema.SCHEMA`, compiled
once into a :class:`RuleSet` whose rules are indexed by action.

See ``docs/rules.md`` for the language. In short::

    internal_tenants: [<tenant id>, ...]
    default: allow                 # the verdict when no rule blocks or allows
    groups: {research: {people: [alice@firm.example], domains: [eu.firm.example]}}
    walls: [{name: Research/Trading, between: [research, trading]}]
    exceptions: [{name: Deal team, rules: [Research/Trading], until: 2026-12-31T00:00:00Z}]
    rules:
      - name: No edits abroad
        when: {actions: [message.edit], location: external}
        then: [block, {log: "text"}, {add_header: {X-Name: value}}]
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import jsonschema
import yaml

from services.common.contracts import Action, MatchedRule, RuleMode
from services.decider.compiler import (
    WALL_ACTIONS,
    CompileProblem,
    Groups,
    actions_of,
    conditions,
    wall_condition,
)
from services.decider.conditions import ActionIs, Condition, screen_texts, unknown_facts
from services.decider.facts import Facts
from services.decider.plan import Planner, Step
from services.decider.schema import SCHEMA, Located, load_located

_TENANT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a rule file, with its place when known."""

    message: str
    line: int | None = None
    column: int | None = None
    path: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}: " if self.line else ""
        at = f"{self.path}: " if self.path else ""
        return f"{where}{at}{self.message}"


class RuleError(ValueError):
    """A rule set that cannot be compiled; ``problems`` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0] if problems else Problem("invalid rule set")
        self.line, self.column = first.line, first.column
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}")


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule (or wall). ``test`` is the hot path."""

    name: str
    conditions: tuple[Condition, ...]
    actions: frozenset[Action] | None = None
    block: bool = False
    allow: bool = False
    log: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    mode: RuleMode = RuleMode.ENFORCE
    unresolved: str = "auto"
    kind: str = "rule"
    enforcing_block: bool = field(init=False)
    matches_on_unknown: bool = field(init=False)
    plain_match: MatchedRule = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        on_unknown = self.unresolved == "match" or (self.unresolved == "auto" and self.block)
        object.__setattr__(self, "matches_on_unknown", on_unknown)
        object.__setattr__(self, "enforcing_block", self.block and self.mode is RuleMode.ENFORCE)
        object.__setattr__(self, "plain_match", self._matched((), None))

    def test(self, facts: Facts) -> tuple[str, ...] | None:
        """None when the rule does not match; else the facts it assumed (often none)."""
        assumed = unknown_facts(self.conditions, facts)
        if not assumed:
            return assumed
        return assumed if self.matches_on_unknown else None

    def all_conditions(self) -> tuple[Condition, ...]:
        """Conditions including the action one, for explanations."""
        if self.actions is None:
            return self.conditions
        return (ActionIs(self.actions), *self.conditions)

    def matched(self, assumed: tuple[str, ...] = (), excepted_by: str | None = None) -> MatchedRule:
        """The verdict's entry for this rule. The common entry is built once and shared:
        nothing may change a verdict's rule entries."""
        if not assumed and excepted_by is None:
            return self.plain_match
        return self._matched(assumed, excepted_by)

    def _matched(self, assumed: tuple[str, ...], excepted_by: str | None) -> MatchedRule:
        actions = ["block"] if self.block and excepted_by is None else []
        actions += ["allow"] if self.allow else []
        actions += ["log"] if self.log else []
        actions += ["add_header"] if self.headers else []
        message = self.log
        if excepted_by is not None:
            actions.append("excepted")
            message = f"block lifted by exception '{excepted_by}'"
        return MatchedRule(
            name=self.name, mode=self.mode, actions=actions, message=message, assumed=list(assumed)
        )


@dataclass(frozen=True, slots=True)
class RuleException:
    """A sanctioned crossing: lifts the block of the named rules until ``until``."""

    name: str
    rules: frozenset[str]
    conditions: tuple[Condition, ...]
    until: float
    reason: str = ""

    def applies(self, facts: Facts) -> bool:
        """Active and every condition certainly true (an unknown fact never lifts a block)."""
        if facts.event.time >= self.until:
            return False
        return all(condition(facts) is True for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...]
    internal_tenants: tuple[str, ...] = ()
    default_block: bool = False
    unidentified_block: bool = True
    x_forwarded_for: bool = False
    lifetimes: dict[str, int] = field(default_factory=dict)
    exceptions: tuple[RuleException, ...] = ()
    tests: tuple[dict[str, Any], ...] = ()
    warnings: tuple[Problem, ...] = ()
    by_action: dict[Action, tuple[Rule, ...]] = field(default_factory=dict)
    planner: Planner = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "planner", Planner(self.by_action, self.rules))

    def plan(self, facts: Facts) -> tuple[Step, ...]:
        """The steps left to test for this event (see :mod:`services.decider.plan`)."""
        return self.planner.plan(facts)

    def candidates(self, action: Action) -> tuple[Rule, ...]:
        """The rules that can match an action, in order."""
        found = self.by_action.get(action)
        return self.rules if found is None else found

    def evaluate(self, event: Any) -> list[Rule]:
        """The rules an event matches, in order (a convenience over ``decide``)."""
        facts = Facts(event)
        return [r for r in self.candidates(event.action) if r.test(facts) is not None]


def version_of(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def _problem(located: Located, path: tuple[Any, ...], message: str) -> Problem:
    where = located.where(path)
    shown = "/".join(str(p) for p in path)
    return Problem(message, where[0] if where else None, where[1] if where else None, shown)


def schema_problems(located: Located) -> list[Problem]:
    """Every JSON Schema violation, with line and column."""
    problems = []
    for error in sorted(_VALIDATOR.iter_errors(located.data), key=lambda e: list(e.path)):
        problems.append(_problem(located, tuple(error.absolute_path), error.message))
    return problems


def parse(source: str) -> Located:
    try:
        located = load_located(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise RuleError([Problem(f"not YAML: {reason}", line, column)]) from None
    if located.data is None:
        located.data = {}
    if not isinstance(located.data, dict):
        raise RuleError([Problem("a rule set is a mapping with a 'rules' list", 1, 1)])
    return located


def compile_rules(source: str, now: float | None = None) -> RuleSet:
    """Validate and compile a rule document. Raises :class:`RuleError`."""
    located = parse(source)
    problems = schema_problems(located)
    if problems:
        raise RuleError(problems)
    try:
        return _compile(located, version_of(source), now)
    except CompileProblem as exc:
        raise RuleError([_problem(located, exc.path, exc.message)]) from None


def _compile(located: Located, version: str, now: float | None) -> RuleSet:
    doc = located.data
    warnings: list[Problem] = []
    tenants = []
    for index, tenant in enumerate(doc.get("internal_tenants") or []):
        normal = tenant.strip().lower()
        if not _TENANT_ID.match(normal):
            raise CompileProblem(("internal_tenants", index), f"{tenant!r} is not a tenant id")
        tenants.append(normal)
    groups = Groups.read(doc.get("groups"))
    compiled: list[Rule] = []
    for index, raw in enumerate(doc.get("walls") or []):
        path = ("walls", index)
        message = raw.get("message") or f"ethical wall: {raw['name']}"
        compiled.append(
            Rule(
                name=raw["name"],
                conditions=(wall_condition(raw, groups, path),),
                actions=actions_of(raw.get("actions")) or WALL_ACTIONS,
                block=True,
                log=message,
                mode=RuleMode(raw.get("mode", "enforce")),
                unresolved=raw.get("unresolved", "auto"),
                kind="wall",
            )
        )
    for index, raw in enumerate(doc.get("rules") or []):
        compiled.append(_rule(raw, groups, ("rules", index)))
    screen_texts([c for rule in compiled for c in rule.conditions])
    names: set[str] = set()
    for index, rule in enumerate(compiled):
        if rule.name in names:
            raise CompileProblem(_rule_path(doc, index), f"duplicate rule name {rule.name!r}")
        names.add(rule.name)
    exceptions = []
    for index, raw in enumerate(doc.get("exceptions") or []):
        exception = _exception(raw, groups, names, ("exceptions", index))
        if exception.until <= (now if now is not None else datetime.now(UTC).timestamp()):
            warnings.append(
                _problem(
                    located,
                    ("exceptions", index, "until"),
                    f"exception '{exception.name}' has expired",
                )
            )
        exceptions.append(exception)
    return RuleSet(
        version=version,
        rules=tuple(compiled),
        internal_tenants=tuple(tenants),
        default_block=doc.get("default", "allow") == "block",
        unidentified_block=doc.get("unidentified_actor", "block") == "block",
        x_forwarded_for=bool(doc.get("x_forwarded_for", False)),
        lifetimes=dict(doc.get("lifetimes") or {}),
        exceptions=tuple(exceptions),
        tests=tuple(doc.get("tests") or []),
        warnings=tuple(warnings),
        by_action=_index(compiled),
    )


def _rule_path(doc: dict[str, Any], index: int) -> tuple[Any, ...]:
    walls = len(doc.get("walls") or [])
    return ("walls", index, "name") if index < walls else ("rules", index - walls, "name")


def _rule(raw: dict[str, Any], groups: Groups, path: tuple[Any, ...]) -> Rule:
    when = raw.get("when") or {}
    block = allow = False
    log: str | None = None
    headers: dict[str, str] = {}
    for effect in raw["then"]:
        if effect == "block":
            block = True
        elif effect == "allow":
            allow = True
        elif "log" in effect:
            log = effect["log"]
        else:
            headers.update(effect["add_header"])
    if block and allow:
        raise CompileProblem((*path, "then"), "a rule cannot both block and allow")
    return Rule(
        name=raw["name"],
        conditions=tuple(conditions(when, groups, (*path, "when"))),
        actions=actions_of(when.get("actions")),
        block=block,
        allow=allow,
        log=log,
        headers=headers,
        mode=RuleMode(raw.get("mode", "enforce")),
        unresolved=raw.get("unresolved", "auto"),
    )


def parse_instant(value: Any, path: tuple[Any, ...]) -> float:
    """An ISO 8601 instant with an offset (YAML may hand over a datetime already)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise CompileProblem(path, f"{value!r} is not an ISO 8601 time") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise CompileProblem(path, "give a time and an offset, e.g. 2026-12-31T23:59:59Z")
    if not isinstance(value, datetime):
        raise CompileProblem(path, "expected an ISO 8601 time")
    if value.tzinfo is None:
        raise CompileProblem(path, "give a UTC offset (e.g. Z or +01:00) so the expiry is exact")
    return value.timestamp()


def _exception(
    raw: dict[str, Any], groups: Groups, names: set[str], path: tuple[Any, ...]
) -> RuleException:
    for index, name in enumerate(raw["rules"]):
        if name not in names:
            raise CompileProblem((*path, "rules", index), f"no rule or wall named {name!r}")
    when = raw.get("when") or {}
    checks = conditions(when, groups, (*path, "when"))
    if "actions" in when:
        checks.insert(0, ActionIs(frozenset(Action(a) for a in when["actions"])))
    return RuleException(
        name=raw["name"],
        rules=frozenset(raw["rules"]),
        conditions=tuple(checks),
        until=parse_instant(raw["until"], (*path, "until")),
        reason=raw.get("reason", ""),
    )


def _index(rules: list[Rule]) -> dict[Action, tuple[Rule, ...]]:
    """For each action, the rules that can match it, in their original order."""
    return {
        action: tuple(r for r in rules if r.actions is None or action in r.actions)
        for action in Action
    }
