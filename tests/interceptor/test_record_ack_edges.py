"""Edges of the record acknowledgement beside the verdict: a wait that must end at its
timeout even when the bus stalls, the acknowledgement reaching the interceptor under
the shipped NATS accounts (as ``tfw up --secure`` renders them for a prefix), and a
record JetStream refuses while the interceptor's fail mode is ``allow``."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.js.errors
import pytest
from mitmproxy import http
from mitmproxy.test import tflow
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy
from prometheus_client import REGISTRY

from services.common.bus import decision_stream_config
from services.common.contracts import (
    Decision,
    InterceptedRequest,
    Subjects,
    encode,
    new_decision_id,
)
from services.decider.service import Decider
from services.decider.settings import DeciderSettings
from services.interceptor.addon import Interceptor
from services.interceptor.ask import RECORD_FAILED, Asker, FailMode
from services.interceptor.settings import InterceptorSettings
from tests.support.decisions import (
    WALL_RULES,
    alice_to_bob,
    intercepted,
    remove_decider_state,
)
from tfw.secure import ACCOUNTS_FILE, USERS, accounts_for_prefix, nats_password
from tfw.stack import Stack, find_nats_server, free_port, wait_for_port

RULES = WALL_RULES
SEND = (
    "https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations/19%3Ax%40thread.v2/messages"
)


packet = intercepted


async def relay_as_resolver(nc: NATS, subjects: Subjects) -> None:
    """Stand in for the resolver: each intercepted request goes on to the decider as
    Alice messaging Bob, the interceptor's reply subject kept."""

    async def on_request(msg: Msg) -> None:
        event = alice_to_bob(InterceptedRequest.from_bytes(msg.data))
        await nc.publish(subjects.enriched, encode(event), reply=msg.reply)

    await nc.subscribe(subjects.intercepted, cb=on_request)
    await nc.flush()


def decider_settings(url: str, prefix: str, rules: Path, **extra: str) -> DeciderSettings:
    return DeciderSettings(
        nats_url=url,
        subject_prefix=prefix,
        stream_max_bytes=8 * 1024**2,
        rules_file=str(rules),
        **extra,
    )


# --- a verdict wait that outlives its timeout -------------------------------------------


async def test_the_wait_for_a_verdict_ends_at_its_timeout_even_when_the_publish_stalls(
    nats_url: str,
) -> None:
    """nats-py swallows the cancellation that ``asyncio.timeout`` delivers while a
    publish waits for its buffer to be flushed (more than ``pending_size`` bytes queued,
    2 MiB by default: large bodies on a slow link). The ask must still end in the fail
    mode at its timeout, not wait on for an answer that may never come."""
    subject = f"tedge{secrets.token_hex(3)}.v1.intercepted"
    nc = await nats.connect(nats_url, pending_size=1)  # every command flushes at once
    silent = await nats.connect(nats_url)

    async def never_answer(msg: Msg) -> None:
        return None

    await silent.subscribe(subject, cb=never_answer)
    await silent.flush()
    asker = Asker(nc)
    try:
        with pytest.raises(FailMode):  # the inbox is subscribed, the bus is healthy
            await asker.ask(subject, packet(new_decision_id()), 0.2)
        assert nc._transport is not None
        drain = nc._transport.drain

        async def slow_link() -> None:
            await asyncio.sleep(1.0)
            await drain()

        nc._transport.drain = slow_link  # type: ignore[method-assign]
        try:
            async with asyncio.timeout(5):  # guard: the test fails instead of hanging
                with pytest.raises(FailMode) as failure:
                    await asker.ask(subject, packet(new_decision_id()), 0.2)
        finally:
            nc._transport.drain = drain  # type: ignore[method-assign]
        assert failure.value.cause == "timeout"
        assert asker._waiting == {}
    finally:
        await nc.close()
        await silent.close()


# --- the acknowledgement under the shipped accounts --------------------------------------


@dataclass
class AccountsBus:
    url: str
    prefix: str
    passwords: dict[str, str]

    async def connect(self, user: str) -> NATS:
        return await nats.connect(self.url, user=user, password=self.passwords[user])


@pytest.fixture(scope="module")
def accounts_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsBus]:
    """A nats-server on 127.0.0.1 with deploy/k8s/components/nats/accounts.conf, its
    names rewritten for a prefix exactly as ``tfw up --secure`` does."""
    data = tmp_path_factory.mktemp("nats-edge-accounts")
    prefix = "tedge" + secrets.token_hex(3)
    accounts = accounts_for_prefix(ACCOUNTS_FILE.read_text(encoding="utf-8"), prefix)
    (data / "accounts.conf").write_text(accounts, encoding="utf-8")
    port = free_port()
    (data / "server.conf").write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"jetstream {{ store_dir: {data / 'js'} }}\n"
        "include ./accounts.conf\n"
    )
    passwords = {user: nats_password() for user in USERS}
    env = {f"TFW_NATS_{user.upper()}_PASSWORD": pw for user, pw in passwords.items()}
    stack = Stack(data, quiet=True)
    with stack:
        process = stack.spawn(
            "nats-edge", [find_nats_server(), "-c", str(data / "server.conf")], env=env, port=port
        )
        wait_for_port(port, 15, process.popen)
        yield AccountsBus(f"nats://127.0.0.1:{port}", prefix, passwords)


def acknowledgements_waited_for() -> float:
    """Verdicts whose record acknowledgement the interceptor has taken."""
    return REGISTRY.get_sample_value("tfw_interceptor_record_wait_seconds_count") or 0.0


async def test_the_record_acknowledgement_reaches_the_interceptor_under_the_shipped_accounts(
    accounts_bus: AccountsBus, tmp_path: Path
) -> None:
    subjects = Subjects(accounts_bus.prefix)
    admin = await accounts_bus.connect("admin")
    js = admin.jetstream()
    await js.add_stream(decision_stream_config(subjects, 3600.0, 8 * 1024**2))
    await js.create_key_value(bucket=subjects.rules_bucket)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    decider = Decider(
        decider_settings(
            accounts_bus.url,
            accounts_bus.prefix,
            rules,
            nats_user="decider",
            nats_password=accounts_bus.passwords["decider"],
        )
    )
    resolver = await accounts_bus.connect("resolver")
    interceptor = await accounts_bus.connect("interceptor")
    try:
        await decider.start()
        await relay_as_resolver(resolver, subjects)
        acknowledged = acknowledgements_waited_for()
        verdict = await Asker(interceptor).ask(
            subjects.intercepted, packet(new_decision_id()), 5.0
        )
        assert verdict.decision is Decision.BLOCK
        assert verdict.rules[0].name == "Research may not message Trading"
        assert verdict.reason != RECORD_FAILED  # the rule's block, not the decider's own
        assert acknowledgements_waited_for() == acknowledged + 1  # it came to the inbox
        info = await js.stream_info(subjects.decision_stream)
        assert info.state.messages == 1
    finally:
        await decider.stop()
        await resolver.close()
        await interceptor.close()
        await js.delete_stream(subjects.decision_stream)
        await js.delete_key_value(subjects.rules_bucket)
        await admin.close()


# --- a refused record under an allow fail mode ------------------------------------------


@dataclass
class FullStream:
    nc: NATS
    subjects: Subjects
    decider: Decider


@pytest.fixture
async def full_stream(nats_url: str, tmp_path: Path) -> AsyncIterator[FullStream]:
    """A decider whose decision stream exists (so it sends verdicts marked for the
    interceptor's acknowledgement) but refuses every new record: it is full and
    discards new messages."""
    prefix = "tedge" + secrets.token_hex(3)
    subjects = Subjects(prefix)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    config = decision_stream_config(subjects, 3600.0, 8 * 1024**2)
    config.discard = DiscardPolicy.NEW
    config.max_msgs = 1
    await js.add_stream(config)
    await js.publish(f"{subjects.decisions}.allow", b"{}")  # the one record it takes
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    decider = Decider(decider_settings(nats_url, prefix, rules))
    await decider.start()
    try:
        await relay_as_resolver(nc, subjects)
        yield FullStream(nc, subjects, decider)
    finally:
        await decider.stop()
        await remove_decider_state(nc, subjects)
        await nc.close()


def interceptor_on(stream: FullStream, fail_mode: str) -> Interceptor:
    settings = InterceptorSettings.load(
        env={}, fail_mode=fail_mode, subject_prefix=stream.subjects.prefix
    )
    addon = Interceptor(settings, "interceptor@test")
    addon.nc = stream.nc
    return addon


async def send(addon: Interceptor) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make(
        "POST", SEND, b'{"content":"hi"}', http.Headers(Authentication="skypetoken=x.y.z")
    )
    addon.requestheaders(flow)
    await addon.request(flow)
    return flow


async def test_a_refused_record_blocks_under_the_default_fail_mode(
    full_stream: FullStream,
) -> None:
    flow = await send(interceptor_on(full_stream, "block"))
    assert flow.response is not None and flow.response.status_code == 403
    assert flow.metadata["tfw"]["failure"] == "record_failed"


async def test_a_blocked_message_whose_record_is_refused_stays_blocked_under_an_allow_fail_mode(
    full_stream: FullStream,
) -> None:
    flow = await send(interceptor_on(full_stream, "allow"))
    assert flow.response is not None and flow.response.status_code == 403
