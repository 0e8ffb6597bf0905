"""The decision: a pure function of (enriched event, rule set) to a verdict and record."""

from __future__ import annotations

import time

from services.common.contracts import (
    CredentialStatus,
    Decision,
    DecisionRecord,
    EnrichedEvent,
    MatchedRule,
    Participant,
    RecordTimings,
    Verdict,
    block_body,
)
from services.decider.rules import RuleSet

MAX_RECORD_PARTICIPANTS = 50


def decide(
    event: EnrichedEvent, rules: RuleSet, block_status: int = 403
) -> tuple[Verdict, DecisionRecord]:
    started = time.perf_counter()
    matched = rules.evaluate(event)
    enforced = [rule for rule in matched if rule.block and rule.mode.value == "enforce"]
    reason = None
    blocked = bool(enforced)
    if enforced:
        reason = f"rule '{enforced[0].name}'"
    elif event.credential.status is not CredentialStatus.OK:
        blocked = True
        reason = f"the actor cannot be identified ({event.credential.reason}): fail closed"
    elif not matched and rules.default_block:
        blocked = True
        reason = "no rule allows it and the default is block"
    headers: dict[str, str] = {}
    if not blocked:
        for rule in matched:
            headers.update(rule.headers)
    decision = Decision.BLOCK if blocked else Decision.ALLOW
    matched_rules: list[MatchedRule] = [rule.matched() for rule in matched]
    verdict = Verdict(
        decision_id=event.id,
        decision=decision,
        status=block_status if blocked else 200,
        body=block_body(event.id, reason or "", block_status) if blocked else b"",
        headers=headers,
        rules=matched_rules,
        ruleset_version=rules.version,
        reason=reason,
    )
    decide_ms = (time.perf_counter() - started) * 1000
    record = record_for(event, verdict, decide_ms)
    return verdict, record


def record_for(event: EnrichedEvent, verdict: Verdict, decide_ms: float) -> DecisionRecord:
    participants: list[Participant] = event.participants
    external = [p for p in participants if p.external]
    return DecisionRecord(
        decision_id=event.id,
        time=event.time,
        ruleset_version=verdict.ruleset_version,
        interceptor=event.interceptor,
        client_ip=event.client_ip,
        front_door=event.front_door,
        method=event.method,
        host=event.host,
        path=event.path,
        action=event.action,
        conversation=event.conversation,
        message_id=event.message_id,
        actor=event.actor,
        credential_status=event.credential.status,
        location=event.location,
        federated=event.federated,
        participant_count=len(participants),
        participants=participants[:MAX_RECORD_PARTICIPANTS],
        participants_truncated=len(participants) > MAX_RECORD_PARTICIPANTS,
        external_participants=external[:MAX_RECORD_PARTICIPANTS],
        targets=event.targets,
        has_files=bool(event.body.files),
        file_names=[f.name for f in event.body.files],
        message_type=event.body.message_type,
        context=event.context,
        rules=verdict.rules,
        decision=verdict.decision,
        would_block=any(r.mode.value == "monitor" and "block" in r.actions for r in verdict.rules),
        status=verdict.status,
        headers_added=verdict.headers,
        reason=verdict.reason,
        timings=RecordTimings(
            resolve_ms=event.resolve_ms,
            decide_ms=decide_ms,
            total_ms=max(0.0, (time.time() - event.time) * 1000),
        ),
    )
