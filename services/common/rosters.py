"""What is made of a large conversation's roster, kept for the next event of the same
conversation.

Every event of a team carries all its members, so whatever is done to them once per
event (validating them, writing them out, normalising their names) is done again for
every message in the team. Rosters of more than :data:`LARGE_ROSTER` people are worth
keeping that work for. Two ways of finding it again:

- :class:`RosterMemo`, under a key the caller derives from the roster's content (the
  decider's intake: the digest of the roster's JSON);
- :class:`SameRoster`, by the very participant objects: an entry holds them and
  serves only those objects, in that order, so no other list can pass for them
  (participants are frozen models). The resolver hands out the same objects while it
  keeps a conversation's roster, and so does the decider's intake.

Either keeps at most ``max_people`` people in all, the least recently used roster
first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from operator import is_

from services.common.contracts import Participant

LARGE_ROSTER = 64
MAX_KEPT_PEOPLE = 50_000


class RosterMemo[K: Hashable, V]:
    """Values made from rosters, by key, at most ``max_people`` people in all."""

    def __init__(self, max_people: int = MAX_KEPT_PEOPLE) -> None:
        self.max_people = max_people
        self._kept: OrderedDict[K, tuple[int, V]] = OrderedDict()
        self._people = 0

    @property
    def kept_people(self) -> int:
        return self._people

    def get(self, key: K) -> V | None:
        found = self._kept.get(key)
        if found is None:
            return None
        self._kept.move_to_end(key)
        return found[1]

    def put(self, key: K, people: int, value: V) -> None:
        """Keep ``value``, made from a roster of ``people`` people, in place of what
        ``key`` held; a roster larger than the whole memo is not kept."""
        replaced = self._kept.pop(key, None)
        if replaced is not None:
            self._people -= replaced[0]
        if people > self.max_people:
            return
        self._kept[key] = (people, value)
        self._people += people
        while self._people > self.max_people:
            _, (dropped, _) = self._kept.popitem(last=False)
            self._people -= dropped


class SameRoster[V]:
    """Values made from rosters, kept by the identity of their participant objects."""

    def __init__(self, max_people: int = MAX_KEPT_PEOPLE) -> None:
        self._memo: RosterMemo[tuple[int, int], tuple[tuple[Participant, ...], V]] = (
            RosterMemo(max_people)
        )

    @property
    def kept_people(self) -> int:
        return self._memo.kept_people

    def get(self, people: list[Participant]) -> V | None:
        """What was made of these very objects, in this order (a non-empty roster)."""
        found = self._memo.get((id(people[0]), len(people)))
        if found is None or not all(map(is_, found[0], people)):
            return None
        return found[1]

    def put(self, people: list[Participant], value: V) -> None:
        self._memo.put((id(people[0]), len(people)), len(people), (tuple(people), value))
