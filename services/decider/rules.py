"""A minimal rule set: the walking skeleton's stand-in for the full rule language.

Document shape (YAML)::

    internal_tenants: [<tenant id>, ...]
    default: allow            # or block
    rules:
      - name: No edits abroad
        when: {actions: [message.edit], location: external, actors: ["*@firm.example"]}
        then: [block, {log: "text"}, {add_header: {X-Name: value}}]
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from services.common.contracts import EnrichedEvent, MatchedRule, RuleMode


class RuleError(ValueError):
    """A rule set that cannot be compiled; the message names the rule and the key."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    actions: frozenset[str] = frozenset()
    location: str | None = None
    actors: tuple[str, ...] = ()
    block: bool = False
    log: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    mode: RuleMode = RuleMode.ENFORCE

    def matches(self, event: EnrichedEvent) -> bool:
        if self.actions and event.action.value not in self.actions:
            return False
        if self.location and event.location.value != self.location:
            return False
        if self.actors:
            names = [n for n in (event.actor.email, event.actor.upn, event.actor.mri) if n]
            if not any(fnmatch.fnmatchcase(n.lower(), p) for n in names for p in self.actors):
                return False
        return True

    def matched(self) -> MatchedRule:
        actions = (["block"] if self.block else []) + (["log"] if self.log else [])
        actions += ["add_header"] if self.headers else []
        return MatchedRule(name=self.name, mode=self.mode, actions=actions, message=self.log)


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...]
    internal_tenants: tuple[str, ...] = ()
    default_block: bool = False

    def evaluate(self, event: EnrichedEvent) -> list[Rule]:
        return [rule for rule in self.rules if rule.matches(event)]


def version_of(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def compile_rules(source: str) -> RuleSet:
    try:
        document = yaml.safe_load(source) or {}
    except yaml.YAMLError as exc:
        raise RuleError(f"not YAML: {exc}") from None
    if not isinstance(document, dict):
        raise RuleError("a rule set is a mapping with a 'rules' list")
    rules = []
    for index, raw in enumerate(document.get("rules") or []):
        rules.append(_rule(index, raw))
    return RuleSet(
        version=version_of(source),
        rules=tuple(rules),
        internal_tenants=tuple(str(t).lower() for t in document.get("internal_tenants") or []),
        default_block=document.get("default", "allow") == "block",
    )


def _rule(index: int, raw: Any) -> Rule:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise RuleError(f"rules[{index}]: a rule needs a name")
    when = raw.get("when") or {}
    block, log, headers = False, None, {}
    for effect in raw.get("then") or []:
        if effect == "block":
            block = True
        elif isinstance(effect, dict) and "log" in effect:
            log = str(effect["log"])
        elif isinstance(effect, dict) and "add_header" in effect:
            headers.update({str(k): str(v) for k, v in effect["add_header"].items()})
        else:
            raise RuleError(f"rules[{index}] ({raw['name']}): unknown effect {effect!r}")
    return Rule(
        name=raw["name"],
        actions=frozenset(when.get("actions") or []),
        location=when.get("location"),
        actors=tuple(str(a).lower() for a in when.get("actors") or []),
        block=block,
        log=log,
        headers=headers,
        mode=RuleMode(raw.get("mode", "enforce")),
    )
