"""Reading enriched events off the bus, with the rosters of large conversations
validated once.

A message in a team of 1,200 people carries all 1,200 participants, every time
(the decider needs them all: a wall asks whether *anyone* present is on the other
side). Validating them is most of the cost of reading such an event: about 3 ms of the
3.3 for the demo's 1,203-member team, against 0.2 ms to write the list out again and
hash it. So a roster of more than
:data:`~services.common.rosters.LARGE_ROSTER` people is kept, validated, under
the SHA-256 digest of its own JSON; the next event with the same people, byte for
byte, gets the kept participants instead of validating them again.

The key is the content itself, so an event is never given participants other than
the ones it carries. Kept participants are shared between events: the decider reads
events and never changes them (they are frozen). At most
:data:`~services.common.rosters.MAX_KEPT_PEOPLE` people are kept in all (about 70 MB:
1.4 KB a person, validated), the least recently used roster first out.
"""

from __future__ import annotations

import hashlib

import orjson

from services.common.contracts import EnrichedEvent, Participant, parse, validate
from services.common.rosters import LARGE_ROSTER, MAX_KEPT_PEOPLE, RosterMemo


class Intake:
    """Decodes enriched events; see the module's docstring."""

    def __init__(self, max_people: int = MAX_KEPT_PEOPLE) -> None:
        self._rosters: RosterMemo[bytes, tuple[Participant, ...]] = RosterMemo(max_people)

    @property
    def kept_people(self) -> int:
        return self._rosters.kept_people

    def decode(self, data: bytes) -> EnrichedEvent:
        """The event in ``data``; a :class:`~services.common.contracts.ContractError`
        when it is not one, exactly as :func:`~services.common.contracts.decode`."""
        raw = parse(data)
        people = raw.get("participants")
        if not isinstance(people, list) or len(people) <= LARGE_ROSTER:
            return validate(EnrichedEvent, raw)
        try:
            key = hashlib.sha256(orjson.dumps(people)).digest()
        except orjson.JSONEncodeError:  # nested deeper than orjson writes: read it as is
            return validate(EnrichedEvent, raw)
        kept = self._rosters.get(key)
        if kept is None:
            event = validate(EnrichedEvent, raw)
            self._rosters.put(key, len(event.participants), tuple(event.participants))
            return event
        raw["participants"] = []
        event = validate(EnrichedEvent, raw)
        event.participants = list(kept)
        return event
