"""Location and federation, as rules see them."""

from __future__ import annotations

import pytest

from services.common.contracts import Actor, Location, Participant, ParticipantKind
from services.resolver.enrich import federated_of, location_of

OURS = frozenset({"t-firm", "t-firm-eu"})


@pytest.mark.parametrize(
    ("tenant", "location"),
    [
        ("t-firm", Location.INTERNAL),
        ("T-FIRM-EU", Location.INTERNAL),
        ("t-partner", Location.EXTERNAL),
        (None, Location.UNKNOWN),
    ],
)
def test_location_is_the_acting_tokens_tenant_against_ours(
    tenant: str | None, location: Location
) -> None:
    assert location_of(Actor(tenant_id=tenant), OURS) is location


def _p(tenant: str | None, kind: ParticipantKind = ParticipantKind.USER) -> Participant:
    return Participant(mri="8:orgid:x", tenant_id=tenant, kind=kind)


@pytest.mark.parametrize(
    ("participants", "federated"),
    [
        ([_p("t-firm"), _p("t-firm")], False),
        ([_p("t-firm"), _p("t-firm-eu")], True),  # a sister tenant is still another tenant
        ([_p("t-firm"), _p(None)], None),
        ([_p(None), _p("t-partner")], True),
        ([_p("t-firm"), _p(None, ParticipantKind.CONSUMER)], True),
        ([], None),
    ],
)
def test_federated_means_some_participant_is_in_another_tenant(
    participants: list[Participant], federated: bool | None
) -> None:
    assert federated_of(Actor(tenant_id="t-firm"), participants) is federated


def test_without_the_actors_tenant_federation_is_unknown() -> None:
    assert federated_of(Actor(), [_p("t-firm")]) is None
