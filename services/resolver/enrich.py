"""Turning an intercepted request into an event, before any context: the action, the
conversation id, the body features and the actor from the credentials. Context (type,
participants) is attached by :mod:`services.resolver.resolve`."""

from __future__ import annotations

from collections.abc import Iterable

from services.common.contracts import (
    SCHEMA_VERSION,
    Actor,
    ContextSource,
    Conversation,
    ConversationType,
    EnrichedEvent,
    InterceptedRequest,
    Location,
    Participant,
    ParticipantKind,
    Provenance,
    assemble,
)
from services.resolver.classify import ParsedRequest, classify
from services.resolver.credentials import Token, read_credentials

# Identities that belong to no Entra tenant: never the actor's tenant.
_TENANTLESS = {
    ParticipantKind.CONSUMER,
    ParticipantKind.ANONYMOUS,
    ParticipantKind.PHONE,
    ParticipantKind.SKYPE_FOR_BUSINESS,
}


def location_of(actor: Actor, internal_tenants: frozenset[str]) -> Location:
    """Internal when the acting token's tenant is one of ours."""
    if actor.tenant_id is None:
        return Location.UNKNOWN
    return Location.INTERNAL if actor.tenant_id.lower() in internal_tenants else Location.EXTERNAL


def federated_of(actor: Actor, participants: Iterable[Participant]) -> bool | None:
    """True when any participant's tenant differs from the actor's (what Teams calls
    External; consumer, anonymous, phone and SfB identities always differ); None when
    it cannot be told because a tenant is unknown; False otherwise."""
    participants = list(participants)
    if actor.tenant_id is None or not participants:
        return None
    unknown = False
    for participant in participants:
        if participant.kind in _TENANTLESS:
            return True
        if participant.tenant_id is None:
            unknown = True
        elif participant.tenant_id.lower() != actor.tenant_id.lower():
            return True
    return None if unknown else False


def understand(request: InterceptedRequest) -> tuple[EnrichedEvent, ParsedRequest, list[Token]]:
    """Classify the request and read its credentials; context is left unresolved.

    Every part of the event is typed already (the request was validated when it was
    decoded, the rest is this code's own), so the event is assembled without being
    validated again (see :func:`~services.common.contracts.assemble`)."""
    parsed = classify(request.method, request.host, request.path, request.body)
    actor, credential, tokens = read_credentials(request.headers)
    conversation = None
    if parsed.conversation_id:
        conversation = assemble(
            Conversation,
            {
                "id": parsed.conversation_id,
                "type": ConversationType.UNKNOWN,
                "topic": None,
                "team_id": None,
                "reply_to": parsed.reply_to,
                "tenant_id": None,
            },
        )
        context = provenance(ContextSource.UNRESOLVED, reason="context not looked at yet")
    else:
        context = provenance(ContextSource.NOT_NEEDED)
    event = assemble(
        EnrichedEvent,
        {
            "schema_version": SCHEMA_VERSION,
            "id": request.id,
            "time": request.time,
            "interceptor": request.interceptor,
            "client_ip": request.client_ip,
            "method": request.method.upper(),
            "host": request.host,
            "path": request.path.split("?", 1)[0][:2048],
            "front_door": parsed.front_door,
            "action": parsed.action,
            "conversation": conversation,
            "message_id": parsed.message_id,
            "actor": actor,
            "credential": credential,
            "location": Location.UNKNOWN,
            "federated": None,
            "participants": [],
            "bots": [],
            "targets": parsed.targets,
            "target_participants": [],
            "body": parsed.body.features,
            "body_size": request.body_size,
            "body_truncated": request.body_truncated,
            "context": context,
            "resolve_ms": 0.0,
            "record_ack": request.record_ack,
        },
    )
    return event, parsed, tokens


def provenance(
    source: ContextSource, age_s: float | None = None, reason: str | None = None
) -> Provenance:
    """How the context was had (assembled: the three fields are typed by the signature)."""
    return assemble(Provenance, {"source": source, "age_s": age_s, "reason": reason})
