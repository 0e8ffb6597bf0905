"""Writing enriched events with the participants of a large conversation written once."""

from __future__ import annotations

import orjson
import pytest

from services.common.contracts import EnrichedEvent, decode, encode
from services.resolver.outbound import LARGE_ROSTER, Outbound
from tests.support.rosters import event_with as _event
from tests.support.rosters import people as _people


@pytest.mark.parametrize("count", [0, 3, LARGE_ROSTER, LARGE_ROSTER + 1, 1203])
def test_every_event_is_written_as_the_contract_writes_it_first_time_and_again(
    count: int,
) -> None:
    outbound = Outbound()
    people = _people(count)
    for event_id in ("e1", "e2"):
        event = _event(people, event_id)
        written = outbound.encode(event)
        assert orjson.loads(written) == orjson.loads(encode(event))
        assert decode(EnrichedEvent, written) == event


def test_the_same_participants_are_written_once() -> None:
    outbound = Outbound()
    people = _people(500)
    outbound.encode(_event(people, "e1"))
    assert outbound.kept_people == 500
    outbound.encode(_event(people, "e2"))
    assert outbound.kept_people == 500


def test_other_objects_are_written_afresh_even_when_one_is_shared() -> None:
    outbound = Outbound()
    people = _people(500)
    outbound.encode(_event(people))
    changed = [people[0], *_people(500, "elsewhere.example")[1:]]  # same first object
    written = orjson.loads(outbound.encode(_event(changed, "e2")))
    assert written["participants"][1]["email"] == "p1@elsewhere.example"
    assert written["participants"][0]["email"] == "p0@firm.example"
    assert outbound.kept_people == 500  # the new roster replaced the old one


def test_the_kept_people_stay_under_the_limit() -> None:
    outbound = Outbound(max_people=1000)
    rosters = [_people(400) for _ in range(3)]
    for people in rosters:
        outbound.encode(_event(people))
    assert outbound.kept_people == 800
    outbound.encode(_event(_people(2000)))  # larger than the whole memo: not kept
    assert outbound.kept_people == 800
    assert orjson.loads(outbound.encode(_event(rosters[0])))["participants"][3]["external"]
