"""Offline tools over a compiled rule set: events written by hand, explanations of a
decision condition by condition, and rule unit tests (event in, expected verdict out).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from services.common.contracts import (
    Action,
    Actor,
    BodyFeatures,
    ContextSource,
    Conversation,
    Credential,
    CredentialStatus,
    EnrichedEvent,
    FileRef,
    Location,
    Participant,
    Provenance,
    Verdict,
)
from services.decider.compiler import CompileProblem
from services.decider.decide import decide
from services.decider.facts import Facts
from services.decider.rules import RuleSet, parse_instant

DEFAULT_TIME = "2026-12-01T10:00:00Z"


class EventSpecError(ValueError):
    """An event written by hand that cannot be turned into an :class:`EnrichedEvent`."""


def _mri(name: str) -> str:
    return "8:orgid:" + hashlib.sha256(name.lower().encode()).hexdigest()[:32]


def _person(raw: Any, default_tenant: str | None) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"email": raw}
    if not isinstance(raw, dict):
        raise EventSpecError(f"a person is an email or a mapping, not {raw!r}")
    person = dict(raw)
    person.setdefault("mri", _mri(person.get("email") or person.get("upn") or "unknown"))
    person.setdefault("tenant_id", default_tenant)
    return person


def event_from_spec(spec: dict[str, Any], rules: RuleSet) -> EnrichedEvent:
    """Build an event from the short form used by rule tests and ``tfw rules explain``.

    The actor's tenant defaults to the first internal tenant, a participant's to the
    actor's; ``targets`` names the people a ``member.add`` or ``chat.create`` brings in;
    ``location``, ``federated`` and each participant's ``external`` are
    computed from tenants unless given. A full ``EnrichedEvent`` (with ``id`` and
    ``credential``) is taken as it is.
    """
    if "id" in spec and "credential" in spec:
        return EnrichedEvent.model_validate(spec)
    internal = set(rules.internal_tenants)
    home = rules.internal_tenants[0] if rules.internal_tenants else None
    actor = _person(spec.get("actor", {}), home)
    tenant = actor.get("tenant_id")
    people = [_person(p, tenant) for p in spec.get("participants") or []]
    if spec.get("actor_is_participant", True) and actor.get("email"):
        if all(p["mri"] != actor["mri"] for p in people):
            people.insert(0, dict(actor))
    participants = []
    for person in people:
        person.setdefault("external", (person.get("tenant_id") or "").lower() not in internal)
        participants.append(Participant.model_validate(person))
    targets = []
    for raw in spec.get("targets") or []:
        person = _person(raw, None)
        person.setdefault("external", (person.get("tenant_id") or "").lower() not in internal)
        targets.append(Participant.model_validate(person))
    location = spec.get("location")
    if location is None and tenant:
        location = "internal" if tenant.lower() in internal else "external"
    federated = spec.get("federated")
    if "federated" not in spec and tenant and all(p.tenant_id for p in participants):
        federated = any(p.tenant_id != tenant for p in participants)
    conversation = spec.get("conversation")
    if isinstance(conversation, str):
        conversation = {"id": "19:test@thread.v2", "type": conversation}
    files = [
        FileRef(name=name, extension=name.rsplit(".", 1)[-1].lower() if "." in name else "")
        for name in spec.get("files") or []
    ]
    try:
        when = parse_instant(spec.get("time", DEFAULT_TIME), ("event", "time"))
    except CompileProblem as exc:
        raise EventSpecError(f"time: {exc.message}") from None
    try:
        return EnrichedEvent(
            id=spec.get("id", "rule-test"),
            time=when,
            interceptor="rule-test",
            client_ip=spec.get("client_ip", ""),
            method=spec.get("method", "POST"),
            host=spec.get("host", "teams.microsoft.com"),
            path=spec.get("path", "/"),
            action=Action(spec.get("action", "message.send")),
            conversation=Conversation.model_validate(conversation) if conversation else None,
            actor=Actor.model_validate({k: v for k, v in actor.items() if k != "external"}),
            credential=Credential(status=CredentialStatus(spec.get("credential", "ok"))),
            location=Location(location or "unknown"),
            federated=federated,
            participants=participants,
            targets=[target.mri for target in targets],
            target_participants=targets,
            body=BodyFeatures(
                message_type=spec.get("message_type"),
                text=spec.get("text"),
                files=files,
                parse_error=spec.get("parse_error"),
            ),
            body_truncated=bool(spec.get("body_truncated", False)),
            context=Provenance(
                source=ContextSource(spec.get("context", "cache")),
                reason=spec.get("context_reason"),
            ),
        )
    except ValueError as exc:
        raise EventSpecError(str(exc).splitlines()[0]) from None


@dataclass
class ConditionReport:
    key: str
    outcome: bool | None
    why: str


@dataclass
class RuleReport:
    name: str
    kind: str
    matched: bool
    evaluated: bool
    conditions: list[ConditionReport] = field(default_factory=list)


def explain(event: EnrichedEvent, rules: RuleSet) -> tuple[Verdict, list[RuleReport]]:
    """The verdict, and for every rule whether it matched and each condition's answer."""
    verdict, _ = decide(event, rules)
    matched = {m.name for m in verdict.rules}
    facts = Facts(event)
    reports = []
    stopped = False
    for rule in rules.rules:
        report = RuleReport(rule.name, rule.kind, rule.name in matched, not stopped)
        for condition in rule.all_conditions():
            outcome = condition(facts)
            report.conditions.append(
                ConditionReport(condition.key, outcome, condition.explain(facts))
            )
        reports.append(report)
        stopped = stopped or (rule.allow and rule.name in matched)
    return verdict, reports


def render_explanation(verdict: Verdict, reports: list[RuleReport]) -> str:
    marks = {True: "yes ", False: "no  ", None: "??? "}
    lines = [
        f"verdict: {verdict.decision.value}" + (f" ({verdict.reason})" if verdict.reason else "")
    ]
    if verdict.headers:
        lines.append(f"headers added: {verdict.headers}")
    lines.append(f"rule set: {verdict.ruleset_version}")
    entries = {entry.name: entry for entry in verdict.rules}
    for report in reports:
        state = "not matched"
        entry = entries.get(report.name)
        if report.matched and entry is not None:
            state = f"MATCHED ({entry.mode.value}: {', '.join(entry.actions) or 'no action'})"
            if "excepted" in entry.actions or entry.assumed:
                state += f" - {entry.message}" if "excepted" in entry.actions else ""
                state += f" - assumed unknown {', '.join(entry.assumed)}" if entry.assumed else ""
        if not report.evaluated:
            state += " (not evaluated: an earlier allow rule matched)"
        lines.append(f"- {report.kind} '{report.name}': {state}")
        for c in report.conditions:
            lines.append(f"    {marks[c.outcome]}{c.key}: {c.why}")
    for entry in verdict.rules:
        if "allow" in entry.actions and entry.name not in {r.name for r in reports}:
            lines.append(f"- exception '{entry.name}': {entry.message}")
    return "\n".join(lines)


@dataclass
class TestResult:
    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)


def run_test(test: dict[str, Any], rules: RuleSet) -> TestResult:
    """Run one rule unit test: ``event`` in, ``expect`` checked against the verdict."""
    name = str(test.get("name", "(unnamed)"))
    try:
        event = event_from_spec(test.get("event") or {}, rules)
    except (EventSpecError, ValueError) as exc:
        return TestResult(name, False, [f"bad event: {exc}"])
    verdict, record = decide(event, rules)
    expect = test.get("expect") or {}
    matched = [m.name for m in verdict.rules]
    failures = []
    if "decision" in expect and verdict.decision.value != expect["decision"]:
        failures.append(
            f"decision {verdict.decision.value}, expected {expect['decision']}"
            + (f" ({verdict.reason})" if verdict.reason else "")
        )
    for rule in expect.get("rules") or []:
        if rule not in matched:
            failures.append(f"rule '{rule}' did not match (matched: {matched or 'none'})")
    for rule in expect.get("not_rules") or []:
        if rule in matched:
            failures.append(f"rule '{rule}' matched but should not")
    if "only_rules" in expect and sorted(matched) != sorted(expect["only_rules"]):
        failures.append(f"matched {matched}, expected exactly {expect['only_rules']}")
    for header, value in (expect.get("headers") or {}).items():
        if verdict.headers.get(header) != value:
            failures.append(f"header {header}={verdict.headers.get(header)!r}, expected {value!r}")
    if "would_block" in expect and record.would_block != expect["would_block"]:
        failures.append(f"would_block {record.would_block}, expected {expect['would_block']}")
    wanted = expect.get("reason_contains")
    if wanted and wanted not in (verdict.reason or ""):
        failures.append(f"reason {verdict.reason!r} does not contain {wanted!r}")
    return TestResult(name, not failures, failures)
