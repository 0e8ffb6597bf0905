"""Resolving context against the Teams simulator serving the shared fixture organisation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from services.common.contracts import (
    Action,
    ContextSource,
    ConversationType,
    EnrichedEvent,
    Location,
    ParticipantKind,
    decode,
    encode,
)
from services.resolver.resolve import Resolution
from services.resolver.tokens import MIDDLE_TIER
from tests.resolver.harness import auth_headers, build, intercepted, sign_in
from tfw.sim.org import Org, load_org
from tfw.sim.teams import TeamsSimulator
from tfw.sim.tokens import AUDIENCE_SPACES, mint_bearer

LEGACY = "https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations"
SEND = {"content": "<p>hi</p>", "messagetype": "RichText/Html", "contenttype": "text"}


@pytest.fixture(scope="module")
def org(shared_cases: Path) -> Org:
    return load_org(shared_cases / "org.yaml")


@pytest.fixture(scope="module")
def sim(org: Org) -> Iterator[TeamsSimulator]:
    with TeamsSimulator(org) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def calm(sim: TeamsSimulator) -> Iterator[None]:
    yield
    sim.rate_limit(0)
    sim.switches.federated_bare_array = False
    sim.switches.hidden_threads.clear()


async def _signed_in(sim: TeamsSimulator, org: Org, *keys: str, **options: object) -> Resolution:
    resolution = build(redirect=sim.url, **options)  # type: ignore[arg-type]
    for key in keys or [k for k, a in org.accounts.items() if a.oid]:
        await resolution.learner.learn(sign_in(org.accounts[key]))
    return resolution


async def _send(resolution: Resolution, org: Org, key: str, conversation: str) -> EnrichedEvent:
    conv_id = org.conversations[conversation].id
    request = intercepted(
        "POST", f"{LEGACY}/{conv_id}/messages", auth_headers(org.accounts[key]), SEND
    )
    return await resolution.enrich(request)


def _calls(sim: TeamsSimulator) -> int:
    return sum(count for name, count in sim.calls.items() if name != "authz")


KINDS = [
    (
        "dm-alice-bob",
        "alice",
        ConversationType.DIRECT,
        {"alice@firm.example", "bob@firm.example"},
        False,
    ),
    (
        "dm-alice-erin",
        "alice",
        ConversationType.DIRECT,
        {"alice@firm.example", "erin@partner.example"},
        True,
    ),
    (
        "grp-desk",
        "bob",
        ConversationType.GROUP,
        {"grace@partner.example", "bob@firm.example", "dave.dealer@firm.example"},
        False,
    ),
    (
        "grp-client",
        "bob",
        ConversationType.GROUP,
        {"bob@firm.example", "dave.dealer@firm.example", "frank@client-co.example"},
        True,
    ),
    (
        "meeting-weekly",
        "bob",
        ConversationType.MEETING,
        {"alice@firm.example", "bob@firm.example", "erin@partner.example"},
        True,
    ),
    (
        "team-markets",
        "alice",
        ConversationType.CHANNEL,
        {
            "alice@firm.example",
            "bob@firm.example",
            "carol@eu.firm.example",
            "dave.dealer@firm.example",
        },
        True,
    ),
    (
        "ch-markets-fx",
        "alice",
        ConversationType.CHANNEL,
        {
            "alice@firm.example",
            "bob@firm.example",
            "carol@eu.firm.example",
            "dave.dealer@firm.example",
        },
        True,
    ),
    (
        "pch-research",
        "alice",
        ConversationType.PRIVATE_CHANNEL,
        {"alice@firm.example", "carol@eu.firm.example"},
        True,
    ),
    (
        "grp-at-partner",
        "alice-at-partner",
        ConversationType.GROUP,
        {"alice@firm.example", "erin@partner.example"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("conversation", "actor", "kind", "emails", "federated"), KINDS, ids=[k[0] for k in KINDS]
)
async def test_each_conversation_kind_resolves_to_its_type_and_people(
    sim: TeamsSimulator,
    org: Org,
    conversation: str,
    actor: str,
    kind: ConversationType,
    emails: set[str],
    federated: bool,
) -> None:
    resolution = await _signed_in(sim, org, actor)
    event = await _send(resolution, org, actor, conversation)
    assert event.context.source is ContextSource.LOOKUP, event.context.reason
    assert event.conversation is not None and event.conversation.type is kind
    assert {p.email for p in event.participants} == emails
    assert event.federated is federated
    assert event.actor.email == org.accounts[actor].email.lower()  # type: ignore[union-attr]


async def test_a_guest_account_inside_our_tenant_is_ours_and_a_sister_tenant_is_not(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "alice")
    event = await _send(resolution, org, "alice", "grp-research")
    by_email = {p.email: p for p in event.participants}
    assert by_email["grace@partner.example"].tenant_id == org.tenants["firm"].id
    assert by_email["grace@partner.example"].kind is ParticipantKind.GUEST
    assert by_email["carol@eu.firm.example"].tenant_id == org.tenants["firm-eu"].id
    assert not any(p.external for p in event.participants)  # both tenants are internal
    assert event.federated is True


async def test_bots_are_listed_apart_from_participants(sim: TeamsSimulator, org: Org) -> None:
    resolution = await _signed_in(sim, org, "alice")
    event = await _send(resolution, org, "alice", "team-markets")
    assert event.bots == [org.accounts["bot"].mri.lower()]
    assert all(not p.mri.startswith("28:") for p in event.participants)


async def test_the_large_team_takes_few_pages_and_profile_calls_then_none_at_all(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "alice")
    before = dict(sim.calls)
    event = await _send(resolution, org, "alice", "team-all-hands")
    pages = sim.calls["chatsvc.members"] - before.get("chatsvc.members", 0)
    profiles = sum(
        sim.calls[name] - before.get(name, 0)
        for name in ("mt.fetchShortProfile", "mt.fetchFederated")
    )
    assert len(event.participants) == 1203
    assert pages <= 13
    assert profiles <= 3
    assert event.federated is True  # erin of partner is a member
    assert sum(p.external for p in event.participants) == 1
    calls = _calls(sim)
    again = await _send(resolution, org, "alice", "team-all-hands")
    assert _calls(sim) == calls
    assert again.context.source is ContextSource.CACHE
    assert len(again.participants) == 1203


async def test_a_second_resolve_of_a_conversation_makes_no_call(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "bob")
    await _send(resolution, org, "bob", "grp-client")
    calls = _calls(sim)
    event = await _send(resolution, org, "bob", "grp-client")
    assert _calls(sim) == calls
    assert event.context.source is ContextSource.CACHE
    assert event.context.age_s is not None


async def test_the_assembled_event_equals_a_validated_copy_and_lacks_no_field(
    sim: TeamsSimulator, org: Org
) -> None:
    """The resolver assembles its events without validating them again: each one
    must be what validation would have made, cold and warm, for every context kind."""
    resolution = await _signed_in(sim, org, "bob")
    for conversation in ("grp-client", "grp-client", "dm-alice-bob"):
        event = await _send(resolution, org, "bob", conversation)
        assert EnrichedEvent.model_validate(event.model_dump()) == event
        assert decode(EnrichedEvent, encode(event)) == event
        made = [event, event.actor, event.credential, event.context, event.conversation]
        for part in made:
            assert set(vars(part)) == set(type(part).model_fields), type(part).__name__


async def test_a_warm_request_does_not_work_out_whom_to_ask_teams_as(
    sim: TeamsSimulator, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding the actor's chat-service address and tokens is for lookups only."""
    resolution = await _signed_in(sim, org, "bob")
    await _send(resolution, org, "bob", "grp-client")
    asked: list[str] = []
    endpoints_of = resolution.store.endpoints_of

    async def counted(user: str) -> object:
        asked.append(user)
        return await endpoints_of(user)

    monkeypatch.setattr(resolution.store, "endpoints_of", counted)
    event = await _send(resolution, org, "bob", "grp-client")
    assert event.context.source is ContextSource.CACHE
    assert asked == []
    await _send(resolution, org, "bob", "grp-desk")  # cold: Teams is asked as bob
    assert asked == [org.accounts["bob"].oid]


async def test_concurrent_requests_for_a_cold_conversation_share_one_lookup(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "bob")
    threads = sim.calls["chatsvc.thread"]
    profiles = sim.calls["mt.fetchShortProfile"]
    events = await asyncio.gather(*[_send(resolution, org, "bob", "grp-desk") for _ in range(5)])
    assert sim.calls["chatsvc.thread"] - threads == 1
    assert sim.calls["mt.fetchShortProfile"] - profiles == 1
    assert all(len(e.participants) == 3 for e in events)


async def test_a_rejected_token_is_dropped_and_another_of_the_same_user_used(
    sim: TeamsSimulator, org: Org
) -> None:
    alice = org.accounts["alice"]
    resolution = await _signed_in(sim, org, "alice")
    assert alice.oid
    # A token Teams refuses (issued in a tenant alice is not in), tried first: it
    # outlives the good one.
    refused = mint_bearer(
        alice.oid, org.tenants["partner"].id, "alice@firm.example", AUDIENCE_SPACES, lifetime_s=7200
    )
    observation = sign_in(alice)
    observation.request_headers = {
        "authorization": f"Bearer {refused}",
        "x-ms-session-id": "old-session",
    }
    await resolution.learner.learn(observation)
    assert len(await resolution.store.tokens_of(alice.oid, MIDDLE_TIER)) == 2
    event = await _send(resolution, org, "alice", "grp-cross")
    assert event.context.source is ContextSource.LOOKUP, event.context.reason
    assert len(await resolution.store.tokens_of(alice.oid, MIDDLE_TIER)) == 1


async def test_with_only_rejected_tokens_the_context_is_unresolved_but_members_listed(
    sim: TeamsSimulator, org: Org
) -> None:
    alice = org.accounts["alice"]
    assert alice.oid
    resolution = build(redirect=sim.url)
    refused = mint_bearer(alice.oid, org.tenants["partner"].id, "a@x", AUDIENCE_SPACES)
    observation = sign_in(alice)
    observation.request_headers = {"authorization": f"Bearer {refused}"}
    await resolution.learner.learn(observation)
    event = await _send(resolution, org, "alice", "grp-cross")
    assert event.context.source is ContextSource.UNRESOLVED
    assert "rejected" in (event.context.reason or "")
    assert len(event.participants) == 3
    assert event.federated is None


async def test_without_a_middle_tier_token_the_reason_says_so(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = build(redirect=sim.url)
    event = await _send(resolution, org, "alice", "pch-research")
    assert event.context.source is ContextSource.UNRESOLVED
    assert event.context.reason == (
        "participant profiles unavailable: no middle-tier token known for the actor"
    )
    assert event.conversation is not None
    assert event.conversation.type is ConversationType.PRIVATE_CHANNEL


async def test_a_rate_limited_lookup_waits_for_retry_after_and_succeeds(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "bob")
    sim.rate_limit(1, retry_after_s=0, endpoint="chatsvc.thread")
    event = await _send(resolution, org, "bob", "meeting-weekly")
    assert event.context.source is ContextSource.LOOKUP
    assert event.conversation is not None and event.conversation.type is ConversationType.MEETING


async def test_an_unknown_conversation_is_unresolved_with_the_reason(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "bob")
    sim.hide_thread(org.conversations["grp-lookalike"].id)
    event = await _send(resolution, org, "bob", "grp-lookalike")
    assert event.context.source is ContextSource.UNRESOLVED
    assert "404" in (event.context.reason or "")
    assert event.federated is None


async def test_the_bare_array_federated_answer_is_understood(sim: TeamsSimulator, org: Org) -> None:
    sim.switches.federated_bare_array = True
    resolution = await _signed_in(sim, org, "bob")
    event = await _send(resolution, org, "bob", "grp-lookalike")
    mallory = next(p for p in event.participants if p.email and "evil" in p.email)
    assert mallory.tenant_id == org.tenants["lookalike"].id
    assert mallory.external


async def test_teams_down_still_gives_an_unresolved_event(org: Org) -> None:
    resolution = build(redirect="http://127.0.0.1:9")
    event = await _send(resolution, org, "alice", "grp-cross")
    assert event.action is Action.MESSAGE_SEND
    assert event.context.source is ContextSource.UNRESOLVED
    assert "unreachable" in (event.context.reason or "")


async def test_a_garbage_token_on_a_cold_conversation_is_unresolved(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = build(redirect=sim.url)
    conv_id = org.conversations["dm-alice-erin"].id
    request = intercepted(
        "POST",
        f"{LEGACY}/{conv_id}/messages",
        auth_headers(org.accounts["alice"], "garbage-token"),
        SEND,
    )
    event = await resolution.enrich(request)
    assert event.credential.status.value == "unreadable"
    assert event.context.source is ContextSource.UNRESOLVED
    assert event.context.reason == "no usable chat-service token for the actor"


async def test_chat_create_profiles_its_targets_without_conversation_context(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "alice")
    body = {
        "members": [
            {"id": org.accounts["alice"].mri, "role": "Admin"},
            {"id": org.accounts["frank"].mri, "role": "Admin"},
        ],
        "properties": {"threadType": "chat", "uniquerosterthread": "true"},
    }
    request = intercepted(
        "POST",
        "https://emea.ng.msg.teams.microsoft.com/v1/threads",
        auth_headers(org.accounts["alice"]),
        body,
    )
    event = await resolution.enrich(request)
    assert event.action is Action.CHAT_CREATE
    assert event.context.source is ContextSource.NOT_NEEDED
    frank = next(p for p in event.target_participants if p.email == "frank@client-co.example")
    assert frank.external and frank.tenant_id == org.tenants["client"].id


async def test_notes_to_self_need_no_lookup(sim: TeamsSimulator, org: Org) -> None:
    resolution = await _signed_in(sim, org, "alice")
    calls = _calls(sim)
    request = intercepted(
        "POST", f"{LEGACY}/48%3Anotes/messages", auth_headers(org.accounts["alice"], "bearer"), SEND
    )
    event = await resolution.enrich(request)
    assert event.conversation is not None and event.conversation.type is ConversationType.SELF
    assert event.context.source is ContextSource.NOT_NEEDED
    assert _calls(sim) - calls <= 1  # at most the actor's own profile
    assert event.actor.email == "alice@firm.example"


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_the_shared_scenario_gets_the_expected_actions_types_and_locations(
    sim: TeamsSimulator, org: Org, shared_cases: Path
) -> None:
    resolution = await _signed_in(sim, org)
    expected = {row["id"]: row for row in _lines(shared_cases / "expected.jsonl")}
    for step in _lines(shared_cases / "scenario.jsonl"):
        acct = org.accounts[step["as"]]
        request = intercepted(
            step["method"], step["url"], auth_headers(acct, step["auth"]), step["body"]
        )
        event = await resolution.enrich(request)
        want = expected[step["id"]]
        assert event.action.value == want["action"], step["id"]
        if "conversation_type" in want:
            assert event.conversation is not None, step["id"]
            assert event.conversation.type.value == want["conversation_type"], step["id"]
        if "location" in want:
            assert event.location.value == want["location"], step["id"]
        if want.get("has_files"):
            assert event.body.has_files, step["id"]
        if step["auth"] != "garbage-token" and event.conversation is not None:
            assert event.context.source is not ContextSource.UNRESOLVED, step["id"]
        if step["id"] == "s03":
            assert event.federated is False
        if step["id"] == "s04":
            assert event.location is Location.EXTERNAL


async def test_adding_a_member_makes_the_next_request_learn_the_roster_afresh(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "alice")
    await _send(resolution, org, "alice", "grp-research")
    conv_id = org.conversations["grp-research"].id
    frank = org.accounts["frank"].mri.replace(":", "%3A")
    add = intercepted(
        "PUT",
        f"https://emea.ng.msg.teams.microsoft.com/v1/threads/{conv_id}/members/{frank}",
        auth_headers(org.accounts["alice"]),
        {"role": "User"},
    )
    event = await resolution.enrich(add)
    assert event.action is Action.MEMBER_ADD
    assert [p.email for p in event.target_participants] == ["frank@client-co.example"]
    assert await resolution.store.conversation(conv_id) is None


async def test_an_internal_failure_still_yields_an_unresolved_event(
    sim: TeamsSimulator, org: Org
) -> None:
    resolution = await _signed_in(sim, org, "alice")

    async def broken(*args: object) -> None:
        raise RuntimeError("bug")

    resolution.store.endpoints_of = broken  # type: ignore[method-assign,assignment]
    event = await _send(resolution, org, "alice", "grp-cross")
    assert event.action is Action.MESSAGE_SEND
    assert event.context.source is ContextSource.UNRESOLVED
    assert event.context.reason == "the resolver failed to resolve context"


@pytest.mark.parametrize(
    ("stalled_read", "reason"),
    [
        # Working out whom to ask Teams as is part of the lookup, and of its budget.
        ("endpoints_of", "the conversation could not be learned within 0.2s"),
        ("conversation", "context not ready within 0.2s"),
    ],
)
async def test_a_slow_store_cannot_hold_the_event_past_the_resolve_budget(
    sim: TeamsSimulator, org: Org, stalled_read: str, reason: str
) -> None:
    resolution = await _signed_in(sim, org, "alice", resolve_timeout_s=0.2)
    stalled = asyncio.Event()

    async def stuck(*args: object) -> None:
        await stalled.wait()  # never set: a database that does not answer

    setattr(resolution.store, stalled_read, stuck)
    event = await _send(resolution, org, "alice", "grp-cross")
    assert event.context.source is ContextSource.UNRESOLVED
    assert event.context.reason == reason
