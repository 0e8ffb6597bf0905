"""Conversation types from thread properties, and the shapes of roster answers."""

from __future__ import annotations

import pytest

from services.common.contracts import ConversationType
from services.resolver.context import horizon_ids, member_ids, split_bots, thread_type


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
