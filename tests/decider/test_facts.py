"""The memo of a conversation's principals: kept by every name of every person, so
no change of a name, tenant or external flag can be answered from another roster."""

from __future__ import annotations

import pytest

from services.common.contracts import Participant
from services.common.rosters import LARGE_ROSTER, SameRoster
from services.decider import facts
from services.decider.facts import principals_of

TENANT = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
OTHER = "9a3f1e55-7c2d-4e8b-a1f0-3b6c9d2e4f33"


def _person(n: int, **changes: object) -> Participant:
    fields: dict[str, object] = {
        "mri": f"8:orgid:{n}",
        "email": f"p{n}@firm.example",
        "upn": f"p{n}@firm.example",
        "tenant_id": TENANT,
        "external": False,
    }
    fields.update(changes)
    return Participant.model_validate(fields)


def test_the_same_people_read_again_give_the_same_principals() -> None:
    first = principals_of([_person(1), _person(2)])
    again = principals_of([_person(1), _person(2)])  # new objects, same names
    assert again is first
    assert [p.ids[0] for p in first] == ["p1@firm.example", "p2@firm.example"]


@pytest.mark.parametrize(
    "change",
    [
        {"email": "someone.else@rival.example"},
        {"upn": "someone.else@rival.example"},
        {"mri": "8:orgid:other"},
        {"tenant_id": OTHER},
        {"external": True},
    ],
)
def test_any_changed_name_or_flag_is_read_afresh(change: dict[str, object]) -> None:
    before = principals_of([_person(1), _person(2)])
    after = principals_of([_person(1), _person(2, **change)])
    assert after is not before
    changed = after[1]
    expected = facts.principal(
        str(change.get("mri", "8:orgid:2")),
        str(change.get("email", "p2@firm.example")),
        str(change.get("upn", "p2@firm.example")),
        str(change.get("tenant_id", TENANT)),
        bool(change.get("external", False)),
    )
    assert changed is expected


def test_a_large_team_is_read_person_by_person_and_not_kept_by_names() -> None:
    team = [_person(n) for n in range(LARGE_ROSTER + 1)]
    kept = facts._principals.cache_info()
    principals = principals_of(team)
    assert len(principals) == len(team)
    assert [p.mri for p in principals] == [p.mri for p in team]
    assert facts._principals.cache_info() == kept  # neither looked up nor kept


def test_a_large_team_s_very_objects_are_read_once_and_no_other_list_passes_for_them() -> None:
    team = [_person(n) for n in range(LARGE_ROSTER + 10)]
    first = principals_of(team)
    assert principals_of(list(team)) is first  # the same objects, as the intake gives
    equal = [_person(n) for n in range(LARGE_ROSTER + 10)]
    assert principals_of(equal) is not first  # equal names, other objects: read afresh
    moved = [team[0], _person(999, tenant_id=OTHER, external=True), *team[2:]]
    changed = principals_of(moved)
    assert changed[1].external and changed[1].tenant == OTHER.lower()
    assert changed[0] is first[0]


def test_the_memo_of_large_teams_stays_under_its_count_of_people(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(facts, "_large", SameRoster(1000))
    for n in range(8):
        principals_of([_person(n * 1000 + k) for k in range(300)])
        assert facts._large.kept_people <= 1000
    principals_of([_person(99_000 + k) for k in range(2000)])  # larger than all: not kept
    assert facts._large.kept_people == 900


def test_a_member_added_to_a_large_team_does_not_push_the_team_out() -> None:
    team = [_person(n) for n in range(LARGE_ROSTER + 10)]
    first = principals_of(team)
    principals_of([*team, _person(5000)])  # the team with the person joining
    assert principals_of(team) is first


def test_the_memo_stays_bounded() -> None:
    assert facts._principals.cache_info().maxsize == facts.MAX_CONVERSATIONS
    for n in range(facts.MAX_CONVERSATIONS + 50):
        principals_of([_person(n), _person(n + 1)])
        assert facts._principals.cache_info().currsize <= facts.MAX_CONVERSATIONS
