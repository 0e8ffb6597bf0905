"""Writing enriched events for the bus, with the participants of a large conversation
written once.

Every event of a team carries all its members, and writing 1,203 of them out took
1.1 ms of each event of the demo's largest team. The resolver hands out the same
participant objects for every event of a conversation while its roster is kept
(:mod:`services.resolver.resolve`), so their JSON is kept beside them: an event whose
participants are those very objects, in that order, gets the kept JSON, and the rest
of the event is written as usual. Identity, not equality, decides: the kept entry
holds the objects, so no other list can pass for them, and participants are never
changed once built. At most :data:`MAX_KEPT_PEOPLE` people are kept in all (the least
recently used roster goes first).
"""

from __future__ import annotations

import operator
from collections import OrderedDict

from pydantic import TypeAdapter

from services.common.contracts import EnrichedEvent, Participant, encode

LARGE_ROSTER = 64
MAX_KEPT_PEOPLE = 50_000  # about 85 MB at worst: the JSON, and the objects held
_PARTICIPANTS = TypeAdapter(list[Participant])


class Outbound:
    """Encodes enriched events; see the module's docstring."""

    def __init__(self, max_people: int = MAX_KEPT_PEOPLE) -> None:
        self.max_people = max_people
        self._kept: OrderedDict[tuple[int, int], tuple[tuple[Participant, ...], bytes]] = (
            OrderedDict()
        )
        self._people = 0

    @property
    def kept_people(self) -> int:
        return self._people

    def encode(self, event: EnrichedEvent) -> bytes:
        """The event as :func:`~services.common.contracts.encode` writes it (the
        participants last)."""
        people = event.participants
        if len(people) <= LARGE_ROSTER:
            return encode(event)
        written = self._written(people)
        rest = event.__pydantic_serializer__.to_json(
            event, by_alias=True, exclude={"participants"}
        )
        return b"".join((rest[:-1], b',"participants":', written, b"}"))

    def _written(self, people: list[Participant]) -> bytes:
        key = (id(people[0]), len(people))
        kept = self._kept.get(key)
        if (
            kept is not None
            and len(kept[0]) == len(people)
            and all(map(operator.is_, kept[0], people))
        ):
            self._kept.move_to_end(key)
            return kept[1]
        written = _PARTICIPANTS.dump_json(people, by_alias=True)
        if kept is not None:
            del self._kept[key]
            self._people -= len(kept[0])
        if len(people) <= self.max_people:
            self._kept[key] = (tuple(people), written)
            self._people += len(people)
            while self._people > self.max_people:
                _, (dropped, _) = self._kept.popitem(last=False)
                self._people -= len(dropped)
        return written
