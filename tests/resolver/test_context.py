"""Conversation types from thread properties, the shapes of roster answers, and how
lookups of a cold conversation are shared and bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from services.common.contracts import ConversationType
from services.resolver.context import (
    Caller,
    Conversations,
    horizon_ids,
    member_ids,
    split_bots,
    thread_type,
)
from services.resolver.store import ConversationRecord, Store
from services.resolver.teams import LookupFailed, TeamsClient
from services.resolver.tokens import TokenCipher, new_key


@pytest.mark.parametrize(
    ("properties", "kind"),
    [
        ({"threadType": "chat", "uniquerosterthread": "true"}, ConversationType.DIRECT),
        ({"threadType": "chat"}, ConversationType.GROUP),
        ({"threadType": "chat", "uniquerosterthread": "false"}, ConversationType.GROUP),
        ({"threadType": "meeting"}, ConversationType.MEETING),
        ({"threadType": "space", "spaceType": "standard"}, ConversationType.CHANNEL),
        ({"threadType": "topic", "spaceId": "19:team@thread.tacv2"}, ConversationType.CHANNEL),
        (
            {"threadType": "space", "spaceTypes": "private", "parentSpaces": "19:t@thread.tacv2"},
            ConversationType.PRIVATE_CHANNEL,
        ),
        ({"threadType": "Chat"}, ConversationType.GROUP),
        ({"threadType": "somethingnew"}, ConversationType.UNKNOWN),
        ({}, ConversationType.UNKNOWN),
    ],
)
def test_thread_properties_give_the_conversation_type(
    properties: dict[str, str], kind: ConversationType
) -> None:
    assert thread_type(properties) is kind


def test_members_and_horizons_answers_list_mris_and_tolerate_junk() -> None:
    answer = {"members": [{"id": "8:orgid:A"}, {"role": "User"}, "x", {"id": 5}]}
    assert member_ids(answer) == ["8:orgid:A"]
    assert member_ids([]) == [] and member_ids({"members": None}) == []
    horizons = {"consumptionhorizons": [{"id": "8:orgid:a", "consumptionhorizon": "1;2;3"}]}
    assert horizon_ids(horizons) == ["8:orgid:a"]
    assert horizon_ids({"consumptionhorizons": []}) == []


def test_bots_are_split_off_and_duplicates_dropped() -> None:
    members, bots = split_bots(["8:orgid:A", "28:bot", "8:orgid:a", "8:live:x"])
    assert members == ["8:orgid:a", "8:live:x"]
    assert bots == ["28:bot"]


class _Learning(Conversations):
    """Conversations whose lookups take ``teams_s`` and are counted, with no Teams."""

    def __init__(self, teams_s: float) -> None:
        super().__init__(
            Store(None, "unused"), TeamsClient(timeout_s=1.0), TokenCipher(new_key()), 600.0
        )
        self.teams_s = teams_s
        self.learned = 0

    async def _learn(self, conversation_id: str, caller: Caller) -> ConversationRecord:
        self.learned += 1
        await asyncio.sleep(self.teams_s)
        record = ConversationRecord(conversation_id, "group", time.time() + 600, members=["8:a"])
        await self.store.save_conversation(record)
        return record


def _caller_after(seconds: float) -> Callable[[], Awaitable[Caller]]:
    """A caller whose details take ``seconds`` to work out (endpoints read from MongoDB)."""

    async def work_out() -> Caller:
        await asyncio.sleep(seconds)
        return Caller("u", "t", "https://chatsvc.invalid", [])

    return work_out


async def test_cold_requests_join_one_lookup_while_its_caller_is_worked_out() -> None:
    conversations = _Learning(teams_s=0.01)
    first, second = await asyncio.gather(
        conversations.get("19:x@thread.v2", _caller_after(0.001), 1.0),
        conversations.get("19:x@thread.v2", _caller_after(0.05), 1.0),
    )
    assert conversations.learned == 1
    assert first[0] is second[0]


async def test_working_out_the_caller_counts_against_the_lookups_time() -> None:
    """0.4 s to work out whom to ask, then 0.3 s for Teams: over a 0.5 s budget."""
    conversations = _Learning(teams_s=0.3)
    with pytest.raises(LookupFailed, match=r"within 0\.5s"):
        await conversations.get("19:x@thread.v2", _caller_after(0.4), 0.5)
