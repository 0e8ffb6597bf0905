"""Reading enriched events with the rosters of large conversations validated once."""

from __future__ import annotations

import orjson
import pytest

from services.common.contracts import ContractError, EnrichedEvent, Participant, decode, encode
from services.decider.intake import LARGE_ROSTER, Intake
from tests.support.rosters import event_with, people


def _event(count: int, event_id: str = "e1", first: str = "a") -> EnrichedEvent:
    return event_with(people(count, first=first), event_id)


@pytest.mark.parametrize("people", [3, LARGE_ROSTER, LARGE_ROSTER + 1, 1203])
def test_every_event_reads_as_the_contract_decodes_it_first_time_and_again(people: int) -> None:
    intake = Intake()
    data = encode(_event(people))
    for _ in range(2):
        assert intake.decode(data) == decode(EnrichedEvent, data)


def test_a_large_roster_is_validated_once_and_kept() -> None:
    intake = Intake()
    first = intake.decode(encode(_event(500, "e1")))
    assert intake.kept_people == 500
    again = intake.decode(encode(_event(500, "e2")))
    assert again.id == "e2" and len(again.participants) == 500
    assert all(a is b for a, b in zip(first.participants, again.participants, strict=True))
    assert intake.kept_people == 500
    assert intake.decode(encode(_event(10))).participants  # small ones are not kept
    assert intake.kept_people == 500


def test_one_person_different_is_another_roster() -> None:
    intake = Intake()
    intake.decode(encode(_event(500, first="a")))
    other = intake.decode(encode(_event(500, first="b")))
    assert other.participants[0].mri == "8:orgid:b"
    assert intake.kept_people == 1000


def test_a_bad_participant_is_refused_even_beside_a_kept_roster() -> None:
    intake = Intake()
    good = encode(_event(500))
    intake.decode(good)
    raw = orjson.loads(good)
    raw["participants"][7]["external"] = "perhaps"
    with pytest.raises(ContractError) as refused:
        intake.decode(orjson.dumps(raw))
    assert refused.value.code == "bad_field" and "participants.7.external" in str(refused.value)


def test_events_sharing_a_roster_do_not_share_the_list() -> None:
    intake = Intake()
    first = intake.decode(encode(_event(500, "e1")))
    second = intake.decode(encode(_event(500, "e2")))
    second.participants.append(Participant(mri="8:orgid:late"))
    assert len(first.participants) == 500


def test_the_kept_people_stay_under_the_limit_the_oldest_roster_going_first() -> None:
    intake = Intake(max_people=1000)
    for first in "abc":
        intake.decode(encode(_event(400, first=first)))
    assert intake.kept_people == 800  # "a" went to make room for "c"
    intake.decode(encode(_event(2000)))  # larger than the whole memo: not kept
    assert intake.kept_people == 800


def test_a_malformed_message_is_the_contract_s_error() -> None:
    with pytest.raises(ContractError) as refused:
        Intake().decode(b"[1, 2]")
    assert refused.value.code == "bad_shape"


def test_a_roster_nested_deeper_than_orjson_writes_is_read_as_decode_reads_it() -> None:
    # A field the contract ignores, 400 levels deep: orjson reads it but writes at
    # most 254 levels, so the roster cannot be keyed, and is read without the memo.
    raw = orjson.loads(encode(_event(LARGE_ROSTER + 1)))
    raw["participants"][2]["ignored"] = "NESTED"
    nested = b'"ignored":' + b"[" * 400 + b"]" * 400
    data = orjson.dumps(raw).replace(b'"ignored":"NESTED"', nested)
    intake = Intake()
    assert intake.decode(data) == decode(EnrichedEvent, data)
    assert intake.kept_people == 0
