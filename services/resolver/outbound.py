"""Writing enriched events for the bus, with the participants of a large conversation
written once.

Every event of a team carries all its members, and writing 1,203 of them out took
1.1 ms of each event of the demo's largest team. The resolver hands out the same
participant objects for every event of a conversation while its roster is kept
(:mod:`services.resolver.resolve`), so their JSON is kept beside them: an event whose
participants are those very objects, in that order, gets the kept JSON, and the rest
of the event is written as usual. Identity, not equality, decides: the kept entry
holds the objects, so no other list can pass for them, and participants are never
changed once built (they are frozen). At most
:data:`~services.common.rosters.MAX_KEPT_PEOPLE` people are kept in all (about 85 MB at
worst: the JSON, and the objects held), the least recently used roster first out.
"""

from __future__ import annotations

from pydantic import TypeAdapter

from services.common.contracts import EnrichedEvent, Participant, encode
from services.common.rosters import LARGE_ROSTER, MAX_KEPT_PEOPLE, SameRoster

_PARTICIPANTS = TypeAdapter(list[Participant])


class Outbound:
    """Encodes enriched events; see the module's docstring."""

    def __init__(self, max_people: int = MAX_KEPT_PEOPLE) -> None:
        self._written: SameRoster[bytes] = SameRoster(max_people)

    @property
    def kept_people(self) -> int:
        return self._written.kept_people

    def encode(self, event: EnrichedEvent) -> bytes:
        """The event as :func:`~services.common.contracts.encode` writes it (the
        participants last)."""
        people = event.participants
        if len(people) <= LARGE_ROSTER:
            return encode(event)
        written = self._written.get(people)
        if written is None:
            written = _PARTICIPANTS.dump_json(people, by_alias=True)
            self._written.put(people, written)
        rest = event.__pydantic_serializer__.to_json(
            event, by_alias=True, exclude={"participants"}
        )
        return b"".join((rest[:-1], b',"participants":', written, b"}"))
