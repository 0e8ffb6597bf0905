"""Passive learning: the client's own traffic fills the cache without a call of ours."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from services.common.contracts import ContextSource, ConversationType, Observation
from services.resolver.tokens import CHATSVC
from tests.resolver.harness import auth_headers, build, intercepted, skype, spaces
from tfw.sim import views
from tfw.sim.org import Org, load_org

LEGACY = "https://emea.ng.msg.teams.microsoft.com"


@pytest.fixture(scope="module")
def org(shared_cases: Path) -> Org:
    return load_org(shared_cases / "org.yaml")


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no lookup expected, got {request.url}")


def _lookup(
    org: Org,
    key: str,
    path: str,
    answer: object,
    status: int = 200,
    host: str = "emea.ng.msg.teams.microsoft.com",
    **extra: object,
) -> Observation:
    return Observation(
        id="o1",
        time=time.time(),
        interceptor="test",
        kind="lookup",
        host=host,
        path=path,
        request_headers={
            **auth_headers(org.accounts[key]),
            "authorization": f"Bearer {spaces(org.accounts[key])}",
        },
        status=status,
        response_body=orjson.dumps(answer),
        **extra,  # type: ignore[arg-type]
    )


async def test_the_authz_answer_teaches_endpoints_and_a_fresh_skypetoken(org: Org) -> None:
    resolution = build(transport=httpx.MockTransport(_refuse))
    alice = org.accounts["alice"]
    answer = views.authz(alice.tenant, skype(alice), 86399)
    observation = _lookup(
        org, "alice", "/api/authsvc/v1.0/authz", answer, host="teams.microsoft.com"
    )
    observation.request_headers = {"authorization": f"Bearer {spaces(alice)}"}
    assert await resolution.learner.learn(observation) == "authz+skypetoken+endpoints"
    endpoints = await resolution.store.endpoints_of(alice.oid or "")
    assert endpoints is not None
    assert endpoints.middle_tier == "https://teams.microsoft.com/api/mt/part/emea-02"
    assert endpoints.region == "emea"
    assert len(await resolution.store.tokens_of(alice.oid or "", CHATSVC)) == 1


async def test_a_thread_the_client_looked_up_resolves_without_any_call(org: Org) -> None:
    resolution = build(transport=httpx.MockTransport(_refuse))
    conversation = org.conversations["grp-desk"]
    thread = views.thread(org, conversation, LEGACY)
    path = f"/v1/threads/{conversation.id.replace(':', '%3A')}?view=msnp24Equivalent"
    assert await resolution.learner.learn(_lookup(org, "bob", path, thread)) == "thread"
    short = {
        "value": [views.short_profile(org.accounts[k]) for k in ("bob", "dave", "grace-guest")]
    }
    profiles = "/api/mt/part/emea-02/beta/users/fetchShortProfile?isMailAddress=false"
    # Bob's own profile ties his tenant's name; his colleagues share it.
    assert (
        await resolution.learner.learn(
            _lookup(org, "bob", profiles, short, host="teams.microsoft.com")
        )
        == "profiles"
    )
    request = intercepted(
        "POST",
        f"{LEGACY}/v1/users/ME/conversations/{conversation.id}/messages",
        auth_headers(org.accounts["bob"]),
        {"messagetype": "Text"},
    )
    event = await resolution.enrich(request)
    assert event.context.source is ContextSource.OBSERVED
    assert event.conversation is not None and event.conversation.type is ConversationType.GROUP
    assert {p.email for p in event.participants} == {
        "bob@firm.example",
        "dave.dealer@firm.example",
        "grace@partner.example",
    }
    assert event.federated is False


async def test_observed_profiles_of_an_untied_tenant_are_not_guessed(org: Org) -> None:
    resolution = build(transport=httpx.MockTransport(_refuse))
    short = {"value": [views.short_profile(org.accounts["carol"])]}
    outcome = await resolution.learner.learn(
        _lookup(
            org,
            "bob",
            "/api/mt/emea/beta/users/fetchShortProfile",
            short,
            host="teams.microsoft.com",
        )
    )
    assert outcome == "ignored: no profile with a certain tenant"
    federated = [views.federated_profile(org.accounts["carol"])]  # the bare-array shape
    assert (
        await resolution.learner.learn(
            _lookup(
                org,
                "bob",
                "/api/mt/emea/beta/users/fetchFederated",
                federated,
                host="teams.microsoft.com",
            )
        )
        == "profiles"
    )
    users = await resolution.store.users_by_mri([org.accounts["carol"].mri])
    assert next(iter(users.values())).tenant_id == org.tenants["firm-eu"].id


async def test_consumption_horizons_give_a_legacy_direct_chat_its_two_people(org: Org) -> None:
    resolution = build(transport=httpx.MockTransport(_refuse))
    conversation = org.conversations["dm-alice-bob"]
    answer = views.consumption_horizons(org, conversation)
    path = f"/v1/threads/{conversation.id}/consumptionhorizons"
    assert await resolution.learner.learn(_lookup(org, "alice", path, answer)) == "horizons"
    record = await resolution.store.conversation(conversation.id)
    assert record is not None and record.type == "direct" and len(record.members) == 2


@pytest.mark.parametrize(
    ("status", "extra", "outcome"),
    [
        (403, {}, "ignored: not a success"),
        (200, {"response_truncated": True}, "ignored: truncated answer"),
    ],
)
async def test_failed_or_cut_answers_teach_nothing(
    org: Org, status: int, extra: dict[str, object], outcome: str
) -> None:
    resolution = build(transport=httpx.MockTransport(_refuse))
    conversation = org.conversations["grp-desk"]
    thread = views.thread(org, conversation, LEGACY)
    observation = _lookup(org, "bob", f"/v1/threads/{conversation.id}", thread, status, **extra)
    assert await resolution.learner.learn(observation) == outcome
    assert await resolution.store.conversation(conversation.id) is None


async def test_a_large_roster_page_is_not_taken_for_the_whole_roster(org: Org) -> None:
    resolution = build(transport=httpx.MockTransport(_refuse))
    team = org.conversations["team-all-hands"]
    page = views.members_page(org, team, LEGACY, 0, 100)
    path = f"/v1/threads/{team.id}/members?view=msnp24Equivalent&pageSize=100"
    assert await resolution.learner.learn(_lookup(org, "alice", path, page)) == (
        "ignored: partial member list"
    )
