"""The resolver service on a real nats-server, looking up the Teams simulator."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from services.common.contracts import (
    ERROR_CODE_HEADER,
    ContextSource,
    ConversationType,
    EnrichedEvent,
    InterceptedRequest,
    Subjects,
    decode,
    encode,
)
from services.resolver.settings import ResolverSettings
from tests.resolver.harness import auth_headers, intercepted, sign_in
from tfw.sim.org import Org, load_org
from tfw.sim.teams import TeamsSimulator
from tfw.stack import Stack, dev_token_key

PREFIX = "tres" + secrets.token_hex(3)
SUBJECTS = Subjects(PREFIX)
LEGACY = "https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations"


@pytest.fixture(scope="module")
def org(shared_cases: Path) -> Org:
    return load_org(shared_cases / "org.yaml")


@pytest.fixture(scope="module")
def resolver(
    infra: Stack, org: Org, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TeamsSimulator]:
    stack = Stack(
        tmp_path_factory.mktemp("resolver"),
        log=infra.log,
        nats_url=infra.nats_url,
        mongodb_uri=infra.mongodb_uri,
    )
    with TeamsSimulator(org) as sim, stack:
        stack.start_service(
            "resolver",
            {
                "TFW_SUBJECT_PREFIX": PREFIX,
                "TFW_DATABASE": f"tfw_{PREFIX}",
                "TFW_TEAMS_REDIRECT": sim.url,
                "TFW_LOG_LEVEL": "DEBUG",
                "TFW_INTERNAL_TENANTS": f"{org.tenants['firm'].id},{org.tenants['firm-eu'].id}",
            },
        )
        yield sim


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.drain()


async def _ask(bus: NATS, request: InterceptedRequest) -> EnrichedEvent:
    """Publish as the interceptor does and catch the event on its way to the decider."""
    got: asyncio.Future[EnrichedEvent] = asyncio.get_running_loop().create_future()

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        event = decode(EnrichedEvent, msg.data)
        if event.id == request.id and not got.done():
            got.set_result(event)

    subscription = await bus.subscribe(SUBJECTS.enriched, cb=on_event)
    await bus.publish(SUBJECTS.intercepted, encode(request), reply=bus.new_inbox())
    try:
        return await asyncio.wait_for(got, 10)
    finally:
        await subscription.unsubscribe()


async def _bob_in_grp_client(bus: NATS, org: Org) -> tuple[str, dict[str, str]]:
    """Bob signed in (his token observed), and the conversation he will write in."""
    await bus.publish(SUBJECTS.observed, encode(sign_in(org.accounts["bob"])))
    await bus.flush()
    return org.conversations["grp-client"].id, auth_headers(org.accounts["bob"])


async def test_an_intercepted_send_comes_out_enriched_without_its_tokens(
    resolver: TeamsSimulator, org: Org, bus: NATS
) -> None:
    conv, headers = await _bob_in_grp_client(bus, org)
    request = intercepted("POST", f"{LEGACY}/{conv}/messages", headers, {"messagetype": "Text"})
    event = await _ask(bus, request)
    for _ in range(20):  # the observation may still be in flight on a loaded box
        if event.context.source is not ContextSource.UNRESOLVED:
            break
        await asyncio.sleep(0.1)
        request.id = f"{request.id}-again"
        event = await _ask(bus, request)
    assert event.context.source in (ContextSource.LOOKUP, ContextSource.CACHE)
    assert event.conversation is not None and event.conversation.type is ConversationType.GROUP
    assert {p.email for p in event.participants} >= {"frank@client-co.example"}
    assert event.federated is True
    payload = encode(event).decode()
    assert headers["authentication"].split("=", 1)[1] not in payload


async def _events_in_order(bus: NATS, requests: list[InterceptedRequest]) -> list[EnrichedEvent]:
    """Publish the requests one after the other; their events as they reach the decider."""
    ids = {r.id for r in requests}
    arrived: list[EnrichedEvent] = []
    all_in = asyncio.Event()

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        event = decode(EnrichedEvent, msg.data)
        if event.id in ids:
            arrived.append(event)
            if len(arrived) == len(ids):
                all_in.set()

    subscription = await bus.subscribe(SUBJECTS.enriched, cb=on_event)
    try:
        for request in requests:
            await bus.publish(SUBJECTS.intercepted, encode(request), reply=bus.new_inbox())
            await bus.flush()
        await asyncio.wait_for(all_in.wait(), 20)
    finally:
        await subscription.unsubscribe()
    return arrived


async def test_a_conversation_teams_is_slow_to_look_up_holds_no_other_request(
    resolver: TeamsSimulator, org: Org, bus: NATS
) -> None:
    """One user's cold conversation waits on Teams; everyone else's messages go on."""
    warm, headers = await _bob_in_grp_client(bus, org)
    cold = f"19:slow{secrets.token_hex(4)}@thread.v2"
    released = resolver.hold(cold)
    try:
        slow = intercepted("POST", f"{LEGACY}/{cold}/messages", headers, {"messagetype": "Text"})
        quick = intercepted("POST", f"{LEGACY}/{warm}/messages", headers, {"messagetype": "Text"})
        arrived = await _events_in_order(bus, [slow, quick])
    finally:
        released.set()
    assert [event.id for event in arrived] == [quick.id, slow.id]
    # The slow one still comes out, marked for the decider's fail mode.
    assert arrived[1].context.source is ContextSource.UNRESOLVED


async def test_a_stopped_resolver_first_answers_the_requests_in_hand(
    infra: Stack, org: Org, tmp_path: Path, bus: NATS
) -> None:
    prefix = "tstop" + secrets.token_hex(3)
    subjects = Subjects(prefix)
    cold = f"19:stop{secrets.token_hex(4)}@thread.v2"
    stack = Stack(tmp_path, log=infra.log, nats_url=infra.nats_url)
    with TeamsSimulator(org) as sim, stack:
        released = sim.hold(cold)
        try:
            process = stack.start_service(
                "resolver", {"TFW_SUBJECT_PREFIX": prefix, "TFW_TEAMS_REDIRECT": sim.url}
            )
            headers = auth_headers(org.accounts["bob"])
            request = intercepted("POST", f"{LEGACY}/{cold}/messages", headers, {})
            got: asyncio.Future[EnrichedEvent] = asyncio.get_running_loop().create_future()

            async def on_event(msg: nats.aio.msg.Msg) -> None:
                if not got.done():
                    got.set_result(decode(EnrichedEvent, msg.data))

            await bus.subscribe(subjects.enriched, cb=on_event)
            await bus.publish(subjects.intercepted, encode(request), reply=bus.new_inbox())
            await bus.flush()
            await asyncio.sleep(0.3)  # in hand, waiting on Teams
            code = await asyncio.to_thread(stack.stop_process, process)
        finally:
            released.set()
        assert code == 0
        assert (await asyncio.wait_for(got, 5)).id == request.id


async def test_a_resolver_stopped_while_nats_is_down_stops_cleanly(
    infra: Stack, org: Org, tmp_path: Path
) -> None:
    stack = Stack(tmp_path, log=infra.log)
    with TeamsSimulator(org) as sim, stack:
        stack.start_nats()
        resolver = stack.start_service("resolver", {"TFW_TEAMS_REDIRECT": sim.url})
        stack.stop_process(stack.find("nats"))
        await asyncio.sleep(1.0)  # the resolver notices and starts reconnecting
        assert await asyncio.to_thread(stack.stop_process, resolver) == 0


async def test_an_event_over_the_server_s_max_payload_is_refused_at_once(
    infra: Stack, org: Org, tmp_path: Path
) -> None:
    """The 1,203-member team's event (about 340 KB) on a server that takes 64 KB."""
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 65536\njetstream {\n  max_file_store: 1TB\n}\n")
    stack = Stack(tmp_path, log=infra.log)
    with TeamsSimulator(org) as sim, stack:
        url = stack.start_nats(extra=["-c", str(config)])
        prefix = "tbig" + secrets.token_hex(3)
        subjects = Subjects(prefix)
        stack.start_service(
            "resolver", {"TFW_SUBJECT_PREFIX": prefix, "TFW_TEAMS_REDIRECT": sim.url}
        )
        client = await nats.connect(url)
        try:
            alice = org.accounts["alice"]
            await client.publish(subjects.observed, encode(sign_in(alice)))
            team = org.conversations["team-all-hands"].id
            for _ in range(20):  # until the sign-in is learnt and the team resolved
                request = intercepted("POST", f"{LEGACY}/{team}/messages", auth_headers(alice), {})
                try:
                    reply = await client.request(subjects.intercepted, encode(request), timeout=3)
                except nats.errors.TimeoutError:  # unresolved: small, went to the decider
                    continue
                assert reply.headers is not None
                assert reply.headers[ERROR_CODE_HEADER] == "too_large"
                break
            else:
                pytest.fail("the resolver never answered too_large")
        finally:
            await client.drain()


async def test_a_malformed_request_is_answered_with_a_typed_error(
    resolver: TeamsSimulator, bus: NATS
) -> None:
    reply = await bus.request(SUBJECTS.intercepted, b'{"schema": 1, "id": 3}', timeout=5)
    assert reply.headers is not None
    assert reply.headers[ERROR_CODE_HEADER] == "bad_field"


async def test_a_request_for_an_unknown_conversation_still_yields_an_event(
    resolver: TeamsSimulator, org: Org, bus: NATS
) -> None:
    request = intercepted(
        "POST",
        f"{LEGACY}/19%3Anowhere%40thread.v2/messages",
        auth_headers(org.accounts["alice"]),
        {"messagetype": "Text"},
    )
    event = await _ask(bus, request)
    assert event.context.source is ContextSource.UNRESOLVED
    assert "404" in (event.context.reason or "")


def test_the_local_stack_gives_the_resolver_one_persistent_private_key(tmp_path: Path) -> None:
    first = dev_token_key(tmp_path)
    assert dev_token_key(tmp_path) == first
    assert (tmp_path / "resolver-token.key").stat().st_mode & 0o777 == 0o600
    assert len(ResolverSettings.load(env={"TFW_TOKEN_KEY": first}).token_key_bytes() or b"") == 32
