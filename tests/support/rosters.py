"""Events of large conversations, for the tests of the memos that read, decide and
write a large roster once."""

from __future__ import annotations

from services.common.contracts import (
    Action,
    Credential,
    CredentialStatus,
    EnrichedEvent,
    Participant,
)


def people(count: int, domain: str = "firm.example", first: str = "p0") -> list[Participant]:
    """``count`` participants of one tenant; the first one's MRI ends in ``first``, and
    the fourth is external."""
    return [
        Participant(
            mri=f"8:orgid:{first if n == 0 else f'p{n}'}",
            email=f"p{n}@{domain}",
            tenant_id="t1",
            external=n == 3,
        )
        for n in range(count)
    ]


def event_with(participants: list[Participant], event_id: str = "e1") -> EnrichedEvent:
    """A send in a conversation of these participants (a list of its own)."""
    return EnrichedEvent(
        id=event_id,
        time=1.5,
        interceptor="i",
        method="POST",
        host="h",
        path="/p",
        action=Action.MESSAGE_SEND,
        credential=Credential(status=CredentialStatus.OK),
        participants=list(participants),
        targets=["8:orgid:t"],
    )
