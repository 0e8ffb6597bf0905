"""The decision: a pure function of (enriched event, rule set) to a verdict and record.

How a verdict is reached, in order:

1. Rules that can match the event's action are tested in order (walls first, then
   rules, as written). Every match is listed. A matching rule with ``allow`` ends the
   evaluation: later rules are not tested.
2. An active exception lifts the block of the rules it names when all its conditions
   are certainly true.
3. The actor cannot be identified (credential not OK): block, unless the rule set says
   ``unidentified_actor: evaluate``.
4. Any remaining enforcing block blocks; monitor-mode blocks are recorded as
   ``would_block`` and let the request pass.
5. Nothing blocked and nothing explicitly allowed: the rule set's ``default``.

Headers of matched ``add_header`` rules are added only when the request is allowed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from services.common.contracts import (
    SCHEMA_VERSION,
    CredentialStatus,
    Decision,
    DecisionRecord,
    EnrichedEvent,
    MatchedRule,
    RecordTimings,
    RuleMode,
    Verdict,
    assemble,
    block_body,
)
from services.decider.facts import Facts
from services.decider.rules import Rule, RuleSet

MAX_RECORD_PARTICIPANTS = 50
UNIDENTIFIED = "the actor cannot be identified: fail closed"


def match(event: EnrichedEvent, rules: RuleSet) -> list[tuple[Rule, tuple[str, ...]]]:
    """The rules an event matches, in order, each with the facts it assumed."""
    facts = Facts(event)
    found: list[tuple[Rule, tuple[str, ...]]] = []
    for step in rules.plan(facts):
        # One or two conditions (most steps): True and False settle them without
        # Step.test, which is asked only when one is unknown (conditions are pure).
        single = step.single
        if single is not None:
            outcome = single(facts)
            if outcome is False:
                continue
            assumed = step.assumed if outcome is True else step.test(facts)
        elif (pair := step.pair) is not None:
            first = pair[0](facts)
            if first is False:
                continue
            second = pair[1](facts)
            if second is False:
                continue
            if first is True and second is True:
                assumed = step.assumed
            else:
                assumed = step.test(facts)
        else:
            assumed = step.test(facts)
        if assumed is None:
            continue
        found.append((step.rule, assumed))
        if step.rule.allow:
            break
    return found


def decide(
    event: EnrichedEvent, rules: RuleSet, block_status: int = 403
) -> tuple[Verdict, DecisionRecord]:
    """Decide one event: the verdict and its decision record. Pure: same event and
    rules, same verdict (ids and timings aside)."""
    started = time.perf_counter()
    verdict, would_block = judge(event, rules, block_status)
    decide_ms = (time.perf_counter() - started) * 1000
    return verdict, record_for(event, verdict, decide_ms, would_block)


def judge(event: EnrichedEvent, rules: RuleSet, block_status: int = 403) -> tuple[Verdict, bool]:
    """The verdict alone, and whether a monitor-mode rule would have blocked."""
    matched = match(event, rules)
    # One pass over the matches for what the verdict needs of them.
    blocking: list[Rule] = []
    headers: dict[str, str] = {}
    allowed = would_block = False
    for rule, _ in matched:
        if rule.enforcing_block:
            blocking.append(rule)
        elif rule.block and rule.mode is RuleMode.MONITOR:
            would_block = True
        if rule.allow:
            allowed = True
        if rule.headers:
            headers.update(rule.headers)
    lifted = _lifted(event, rules, blocking) if blocking and rules.exceptions else {}
    if lifted:
        blocking = [rule for rule in blocking if rule.name not in lifted]

    reason = None
    if event.credential.status is not CredentialStatus.OK and rules.unidentified_block:
        detail = event.credential.reason or event.credential.status.value
        reason = f"{UNIDENTIFIED} ({detail})"
    elif blocking:
        first = blocking[0]
        reason = f"rule '{first.name}'" + (f": {first.log}" if first.log else "")
    elif rules.default_block and not allowed:
        reason = "no rule allows it and the default is block"

    if reason is not None:
        headers = {}  # headers are added only to what is let through
    elif rules.x_forwarded_for and event.client_ip:
        headers["X-Forwarded-For"] = event.client_ip

    if lifted:
        listed = [rule.matched(assumed, lifted.get(rule.name)) for rule, assumed in matched]
        listed += [_exception_entry(rules, name) for name in dict.fromkeys(lifted.values())]
    else:
        listed = [rule.matched(assumed) for rule, assumed in matched]
    blocked = reason is not None
    verdict = assemble(
        Verdict,
        {
            "schema_version": SCHEMA_VERSION,
            "decision_id": event.id,
            "decision": Decision.BLOCK if blocked else Decision.ALLOW,
            "status": block_status if blocked else 200,
            "body": block_body(event.id, reason or "", block_status) if blocked else b"",
            "headers": headers,
            "rules": listed,
            "ruleset_version": rules.version,
            "reason": reason,
        },
    )
    return verdict, would_block


def _lifted(event: EnrichedEvent, rules: RuleSet, blocking: list[Rule]) -> dict[str, str]:
    """Rule name -> the exception that lifts its block for this event."""
    facts = Facts(event)
    lifted: dict[str, str] = {}
    for exception in rules.exceptions:
        names = [r.name for r in blocking if r.name in exception.rules and r.name not in lifted]
        if names and exception.applies(facts):
            lifted.update(dict.fromkeys(names, exception.name))
    return lifted


def _exception_entry(rules: RuleSet, name: str) -> MatchedRule:
    exception = next(e for e in rules.exceptions if e.name == name)
    until = datetime.fromtimestamp(exception.until, UTC).isoformat().replace("+00:00", "Z")
    why = f"; {exception.reason}" if exception.reason else ""
    return MatchedRule(
        name=name, actions=["allow"], message=f"sanctioned crossing until {until}{why}"
    )


def record_for(
    event: EnrichedEvent, verdict: Verdict, decide_ms: float, would_block: bool = False
) -> DecisionRecord:
    """The decision record (SIEM contract) for an event and its verdict."""
    participants = event.participants
    external = [p for p in participants if p.external]
    files = event.body.files
    timings = assemble(
        RecordTimings,
        {
            "resolve_ms": event.resolve_ms,
            "decide_ms": decide_ms,
            "total_ms": max(0.0, (time.time() - event.time) * 1000),
        },
    )
    return assemble(
        DecisionRecord,
        {
            "schema_version": SCHEMA_VERSION,
            "decision_id": event.id,
            "time": event.time,
            "ruleset_version": verdict.ruleset_version,
            "interceptor": event.interceptor,
            "client_ip": event.client_ip,
            "front_door": event.front_door,
            "method": event.method,
            "host": event.host,
            "path": event.path,
            "action": event.action,
            "conversation": event.conversation,
            "message_id": event.message_id,
            "actor": event.actor,
            "credential_status": event.credential.status,
            "location": event.location,
            "federated": event.federated,
            "participant_count": len(participants),
            "participants": participants[:MAX_RECORD_PARTICIPANTS],
            "participants_truncated": len(participants) > MAX_RECORD_PARTICIPANTS,
            "external_participants": external[:MAX_RECORD_PARTICIPANTS],
            "targets": event.targets,
            "has_files": bool(files),
            "file_names": [f.name for f in files],
            "message_type": event.body.message_type,
            "text": None,  # the decider does not record message text
            "context": event.context,
            "rules": verdict.rules,
            "decision": verdict.decision,
            "would_block": would_block,
            "status": verdict.status,
            "headers_added": verdict.headers,
            "reason": verdict.reason,
            "timings": timings,
            # Set by the audit service when it archives and chains the record.
            "actor_keys": [],
            "chain": None,
            "chain_seq": None,
            "prev_hash": None,
            "hash": None,
        },
    )
