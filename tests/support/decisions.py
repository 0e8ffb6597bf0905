"""The decision case the decider and record-acknowledgement tests share: Alice
(Research) messages Bob (Trading), which the one rule of ``WALL_RULES`` blocks."""

from __future__ import annotations

import time

import nats.js.errors
from nats.aio.client import Client as NATS

from services.common.contracts import (
    Action,
    Actor,
    Conversation,
    ConversationType,
    Credential,
    CredentialStatus,
    EnrichedEvent,
    InterceptedRequest,
    Location,
    Participant,
    Subjects,
    new_decision_id,
)

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
WALL_RULES = f"""
internal_tenants: [{FIRM}]
rules:
  - name: Research may not message Trading
    when: {{actors: [alice@firm.example], participants: [bob@firm.example]}}
    then: [block]
"""
SEND_PATH = "/v1/users/ME/conversations/x/messages"


def intercepted(decision_id: str) -> InterceptedRequest:
    """A message send as a current interceptor asks about it (record_ack set)."""
    return InterceptedRequest(
        id=decision_id,
        time=time.time(),
        interceptor="test",
        method="POST",
        host="emea.ng.msg.teams.microsoft.com",
        path=SEND_PATH,
        record_ack=True,
    )


def alice_to_bob(request: InterceptedRequest | None = None) -> EnrichedEvent:
    """What the resolver makes of Alice messaging Bob in their direct chat; with
    ``request``, for that request (its id, time and record_ack)."""
    return EnrichedEvent(
        id=request.id if request else new_decision_id(),
        time=request.time if request else time.time(),
        interceptor="test",
        method="POST",
        host="emea.ng.msg.teams.microsoft.com",
        path=SEND_PATH,
        action=Action.MESSAGE_SEND,
        conversation=Conversation(id="19:x@thread.v2", type=ConversationType.DIRECT),
        actor=Actor(mri="8:orgid:a", email="alice@firm.example", tenant_id=FIRM),
        credential=Credential(status=CredentialStatus.OK),
        location=Location.INTERNAL,
        federated=False,
        participants=[
            Participant(mri="8:orgid:a", email="alice@firm.example", tenant_id=FIRM),
            Participant(mri="8:orgid:b", email="bob@firm.example", tenant_id=FIRM),
        ],
        record_ack=request.record_ack if request else False,
    )


async def remove_decider_state(nc: NATS, subjects: Subjects) -> None:
    """Delete the decision stream and rule bucket a test's decider made on the shared
    server."""
    js = nc.jetstream()
    for delete in (
        lambda: js.delete_stream(subjects.decision_stream),
        lambda: js.delete_key_value(subjects.rules_bucket),
    ):
        try:
            await delete()
        except nats.js.errors.NotFoundError:
            pass
