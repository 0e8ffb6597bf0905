"""What is made of a large roster, kept by key or by the very participant objects, and
the bound on the people kept."""

from __future__ import annotations

from services.common.rosters import RosterMemo, SameRoster
from tests.support.rosters import people


def _counted(memo: RosterMemo[str, str]) -> int:
    return sum(count for count, _ in memo._kept.values())


def test_the_people_kept_are_counted_through_replacements_and_evictions() -> None:
    memo: RosterMemo[str, str] = RosterMemo(1000)
    memo.put("a", 400, "A")
    memo.put("b", 400, "B")
    memo.put("a", 300, "A2")  # in place of the first "a"
    assert memo.kept_people == _counted(memo) == 700
    memo.put("c", 400, "C")  # "b" is the least recently used: out
    assert memo.get("b") is None and memo.get("a") == "A2" and memo.get("c") == "C"
    assert memo.kept_people == _counted(memo) == 700
    memo.put("d", 2000, "D")  # larger than the whole memo: not kept
    assert memo.get("d") is None
    assert memo.kept_people == _counted(memo) == 700


def test_reading_an_entry_keeps_it_longest() -> None:
    memo: RosterMemo[str, str] = RosterMemo(1000)
    memo.put("a", 400, "A")
    memo.put("b", 400, "B")
    assert memo.get("a") == "A"
    memo.put("c", 400, "C")
    assert memo.get("a") == "A" and memo.get("b") is None


def test_only_the_very_objects_in_their_order_find_what_was_made_of_them() -> None:
    memo: SameRoster[str] = SameRoster()
    team = people(100)
    memo.put(team, "made")
    assert memo.get(list(team)) == "made"
    assert memo.get(people(100)) is None  # equal, other objects
    assert memo.get([team[0], *reversed(team[1:])]) is None  # same objects, other order
    assert memo.get(team[:99]) is None  # one fewer
    assert memo.kept_people == 100
