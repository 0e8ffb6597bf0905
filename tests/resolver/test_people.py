"""People: MRI kinds, who counts as external, profile answers of both shapes."""

from __future__ import annotations

import time

import pytest

from services.common.contracts import ParticipantKind
from services.resolver.people import kind_of, participant, profile_items, user_from_profile
from services.resolver.store import UserRecord

OURS = frozenset({"t-firm"})


@pytest.mark.parametrize(
    ("mri", "user_type", "kind"),
    [
        ("8:orgid:a11ce000-0000-4000-8000-000000000001", "Member", ParticipantKind.USER),
        ("8:orgid:62ace000-0000-4000-8000-000000000008", "Guest", ParticipantKind.GUEST),
        ("8:live:someone", None, ParticipantKind.CONSUMER),
        ("8:teamsvisitor:4f2a", None, ParticipantKind.ANONYMOUS),
        ("teamsvisitor:4f2a", None, ParticipantKind.ANONYMOUS),
        ("28:7e57b070-0000-4000-8000-000000000009", None, ParticipantKind.BOT),
        ("48:notes", None, ParticipantKind.SYSTEM),
        ("2:someone@sfb.example", None, ParticipantKind.SKYPE_FOR_BUSINESS),
        ("4:+15551234567", None, ParticipantKind.PHONE),
        ("1:legacy", None, ParticipantKind.UNKNOWN),
    ],
)
def test_every_mri_kind_is_recognised(
    mri: str, user_type: str | None, kind: ParticipantKind
) -> None:
    assert kind_of(mri, user_type) is kind


@pytest.mark.parametrize(
    ("mri", "tenant", "external"),
    [
        ("8:orgid:a", "t-firm", False),
        ("8:orgid:b", "t-partner", True),
        ("8:orgid:c", None, False),  # unknown: not claimed external, federated says None
        ("8:live:d", None, True),
        ("8:teamsvisitor:e", None, True),
        ("4:+4420", None, True),
        ("2:f@sfb", None, True),
    ],
)
def test_anonymous_consumer_and_phone_participants_count_as_external(
    mri: str, tenant: str | None, external: bool
) -> None:
    user = UserRecord(mri, time.time() + 60, tenant_id=tenant) if tenant else None
    assert participant(mri, user, OURS).external is external


def test_profiles_come_as_an_object_with_value_or_a_bare_array() -> None:
    item = {"mri": "8:orgid:X", "email": "Frank@Client-Co.Example", "tenantId": "T-Client"}
    assert profile_items({"value": [item]}) == profile_items([item]) == [item]
    assert profile_items({"value": "nope"}) == [] and profile_items(None) == []
    record = user_from_profile(item, "t-hint", time.time() + 60)
    assert record.mri == "8:orgid:x"
    assert record.email == "frank@client-co.example"
    assert record.tenant_id == "t-client"  # its own tenant wins over the hint
