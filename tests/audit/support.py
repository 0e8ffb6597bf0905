"""Decision records and archives for the audit tests."""

from __future__ import annotations

import secrets
import time
from typing import Any

from services.common.contracts import (
    Action,
    Actor,
    Conversation,
    ConversationType,
    Decision,
    DecisionRecord,
    Location,
    MatchedRule,
    RuleMode,
    new_decision_id,
)

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
ALICE = "8:orgid:a11ce000-0000-4000-8000-000000000001"
BOB = "8:orgid:b0b00000-0000-4000-8000-000000000002"


def record(
    at: float | None = None,
    actor: str = ALICE,
    conversation: str = "19:abc@thread.v2",
    action: Action = Action.MESSAGE_SEND,
    decision: Decision = Decision.ALLOW,
    rules: tuple[str, ...] = (),
    **extra: Any,
) -> DecisionRecord:
    """A realistic record; ``at`` defaults to now (ids sort like times)."""
    moment = time.time() if at is None else at
    email = "alice@firm.example" if actor == ALICE else "bob@firm.example"
    if decision is Decision.BLOCK and rules:
        extra.setdefault("reason", f"rule '{rules[0]}'")
    return DecisionRecord(
        decision_id=new_decision_id(moment),
        time=moment,
        ruleset_version="rs-" + secrets.token_hex(4),
        interceptor="interceptor-1",
        client_ip="10.1.2.3",
        front_door="chatsvc",
        method="POST",
        host="emea.ng.msg.teams.microsoft.com",
        path=f"/v1/users/ME/conversations/{conversation}/messages",
        action=action,
        conversation=Conversation(id=conversation, type=ConversationType.GROUP),
        actor=Actor(mri=actor, email=email, tenant_id=FIRM),
        location=Location.INTERNAL,
        federated=False,
        rules=[MatchedRule(name=name, mode=RuleMode.ENFORCE, actions=["block"]) for name in rules],
        decision=decision,
        status=403 if decision is Decision.BLOCK else 200,
        **extra,
    )


def records(count: int, start: float | None = None, step: float = 0.001) -> list[DecisionRecord]:
    """``count`` allowed sends, ``step`` seconds apart."""
    first = time.time() - count * step if start is None else start
    return [record(at=first + index * step) for index in range(count)]
