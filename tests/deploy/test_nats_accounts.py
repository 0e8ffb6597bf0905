"""deploy/nats/accounts.conf on a real nats-server: who may read and write what."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.common.contracts import Subjects
from tests.deploy.conftest import (
    DEPLOY,
    NATS_COMPONENT,
    NATS_USERS,
    AccountsServer,
    load_module,
)
from tfw.stack import find_nats_server

SUBJECTS = Subjects("tfw")
TOKEN_SUBJECTS = (SUBJECTS.intercepted, SUBJECTS.observed)


class Session:
    """One connection as one user, recording the permission errors the server sends."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.violated = asyncio.Event()
        self.nc: NATS | None = None

    async def on_error(self, exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            self.violations.append(str(exc))
            self.violated.set()

    async def refused(self, timeout: float = 2.0) -> bool:
        """True once the server reported a permissions violation on this connection."""
        try:
            await asyncio.wait_for(self.violated.wait(), timeout)
        except TimeoutError:
            return False
        return True


@asynccontextmanager
async def session(server: AccountsServer, user: str) -> AsyncIterator[Session]:
    state = Session()
    state.nc = await nats.connect(
        server.url,
        user=user,
        password=server.passwords[user],
        error_cb=state.on_error,
        connect_timeout=5,
        allow_reconnect=False,
    )
    try:
        yield state
    finally:
        await state.nc.close()


async def subscribe_outcome(server: AccountsServer, reader: str, subject: str) -> str:
    """What happens when ``reader`` subscribes to ``subject`` and the interceptor
    publishes there: "delivered", "refused" (the server reported a permissions
    violation) or "nothing" within the time allowed."""
    async with session(server, reader) as sub, session(server, "interceptor") as pub:
        assert sub.nc is not None and pub.nc is not None
        got = asyncio.Event()

        async def on_message(_msg: object) -> None:
            got.set()

        await sub.nc.subscribe(subject, cb=on_message)
        await sub.nc.flush()
        waiter = asyncio.create_task(got.wait())
        refusal = asyncio.create_task(sub.violated.wait())
        # Core NATS is at-most-once: on a loaded machine one message may not reach a
        # subscription that was only just registered, so the publisher keeps
        # publishing until the subscriber hears one or is refused.
        done: set[asyncio.Task[bool]] = set()
        deadline = asyncio.get_running_loop().time() + 10.0
        while not done and asyncio.get_running_loop().time() < deadline:
            await pub.nc.publish(subject, b"{}")
            await pub.nc.flush()
            done, _ = await asyncio.wait(
                {waiter, refusal}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED
            )
        for task in (waiter, refusal):
            task.cancel()
        if waiter in done:
            return "delivered"
        return "refused" if refusal in done else f"nothing (publisher: {pub.violations})"


@pytest.mark.parametrize("subject", TOKEN_SUBJECTS)
async def test_only_the_resolver_receives_the_subjects_that_carry_tokens(
    accounts_server: AccountsServer, subject: str
) -> None:
    assert await subscribe_outcome(accounts_server, "resolver", subject) == "delivered"
    for user in ("interceptor", "decider", "audit", "siem", "admin"):
        assert await subscribe_outcome(accounts_server, user, subject) == "refused", user


async def test_no_user_but_the_resolver_may_subscribe_to_every_subject(
    accounts_server: AccountsServer,
) -> None:
    for user in ("interceptor", "decider", "audit", "siem", "admin"):
        async with session(accounts_server, user) as state:
            assert state.nc is not None
            await state.nc.subscribe(">")
            await state.nc.flush()
            assert await state.refused(), user


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("interceptor", SUBJECTS.enriched),
        ("interceptor", "tfw.v1.decisions.allow"),
        ("resolver", SUBJECTS.intercepted),
        ("resolver", "tfw.v1.decisions.allow"),
        ("decider", SUBJECTS.enriched),
        ("decider", "$KV.tfw_rules.active"),
        ("audit", "tfw.v1.decisions.block"),
        ("resolver", "$KV.tfw_rules.active"),
        ("decider", "$JS.API.STREAM.CREATE.KV_tfw_rules"),
        ("audit", "$JS.API.STREAM.CREATE.TFW_DECISIONS"),
        ("audit", "$JS.API.STREAM.PURGE.TFW_DECISIONS"),
        ("siem", "$JS.API.CONSUMER.DELETE.TFW_DECISIONS.audit"),
    ],
)
async def test_a_service_may_not_publish_outside_its_allow_list(
    accounts_server: AccountsServer, user: str, subject: str
) -> None:
    async with session(accounts_server, user) as state:
        assert state.nc is not None
        await state.nc.publish(subject, b"{}")
        await state.nc.flush()
        assert await state.refused()


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("interceptor", SUBJECTS.intercepted),
        ("interceptor", SUBJECTS.observed),
        ("resolver", SUBJECTS.enriched),
        ("decider", "tfw.v1.decisions.allow"),
        ("admin", "$KV.tfw_rules.active"),
    ],
)
async def test_a_service_may_publish_what_it_must(
    accounts_server: AccountsServer, user: str, subject: str
) -> None:
    async with session(accounts_server, user) as state:
        assert state.nc is not None
        await state.nc.publish(subject, b"{}")
        await state.nc.flush()
        assert not await state.refused(timeout=0.5), state.violations


async def test_the_bootstrap_creates_the_stream_and_the_rule_bucket_twice_over(
    accounts_server: AccountsServer,
) -> None:
    bootstrap = load_module(DEPLOY / "nats" / "bootstrap.py", "tfw_bootstrap")
    env = {**accounts_server.env("admin"), "TFW_SIEM_CONSUMERS": "siem"}
    settings = bootstrap.BootstrapSettings.load(env=env)
    await bootstrap.bootstrap(settings)
    await bootstrap.bootstrap(settings)  # idempotent: the second run changes nothing

    async with session(accounts_server, "admin") as state:
        assert state.nc is not None
        js = state.nc.jetstream()
        stream = await js.stream_info(SUBJECTS.decision_stream)
        assert stream.config.subjects == [SUBJECTS.decisions_all]
        kv = await js.key_value(SUBJECTS.rules_bucket)
        assert (await kv.status()).history == 10
        consumer = await js.consumer_info(SUBJECTS.decision_stream, "siem")
        assert consumer.config.durable_name == "siem"


@pytest.mark.parametrize("component", ["nats", "nats-cluster"])
def test_the_shipped_server_configurations_are_accepted_by_nats_server(
    tmp_path: Path, component: str
) -> None:
    shutil.copy(NATS_COMPONENT / "accounts.conf", tmp_path / "accounts.conf")
    shutil.copy(NATS_COMPONENT.parent / component / "nats.conf", tmp_path / "nats.conf")
    env = {f"TFW_NATS_{user.upper()}_PASSWORD": "t" + "0" * 40 for user in NATS_USERS}
    env["POD_NAME"] = "tfw-nats-0"
    result = subprocess.run(
        [find_nats_server(), "-c", str(tmp_path / "nats.conf"), "-t"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_the_cluster_routes_name_each_pod_of_the_three_node_statefulset(
    rendered: dict[str, list[dict]],
) -> None:
    objects = rendered["examples/nats-cluster"]
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert statefulset["spec"]["replicas"] == 3
    (config,) = [
        o for o in objects if o["kind"] == "ConfigMap" and "nats.conf" in o.get("data", {})
    ]
    routes = re.findall(r"nats://([\w.-]+):6222", config["data"]["nats.conf"])
    service = statefulset["spec"]["serviceName"]
    assert routes == [f"tfw-nats-{i}.{service}" for i in range(3)]
    assert "accounts.conf" in config["data"]


@pytest.mark.parametrize(
    ("user", "needs"),
    [("decider", {"stream", "bucket"}), ("audit", {"stream"}), ("resolver", {"bucket"})],
)
async def test_a_service_waits_as_its_own_user_until_the_bootstrap_has_run(
    accounts_server: AccountsServer, caplog: pytest.LogCaptureFixture, user: str, needs: set[str]
) -> None:
    bootstrap = load_module(DEPLOY / "nats" / "bootstrap.py", "tfw_bootstrap")
    async with session(accounts_server, "admin") as admin:
        assert admin.nc is not None
        js = admin.nc.jetstream()
        for stream in (SUBJECTS.decision_stream, f"KV_{SUBJECTS.rules_bucket}"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(stream)

    settings = bootstrap.BootstrapSettings.load(env=accounts_server.env(user))
    caplog.set_level(logging.INFO, logger="tfw.bootstrap")
    waiting = asyncio.ensure_future(bootstrap.wait_for(settings, needs, poll_s=0.05))
    for _ in range(200):
        if "waiting for" in caplog.text or waiting.done():
            break
        await asyncio.sleep(0.05)
    assert not waiting.done()

    admin_settings = bootstrap.BootstrapSettings.load(env=accounts_server.env("admin"))
    await bootstrap.bootstrap(admin_settings)
    await asyncio.wait_for(waiting, 10)


async def test_the_resolver_may_answer_a_request_it_received_but_no_other_inbox(
    accounts_server: AccountsServer,
) -> None:
    async with session(accounts_server, "resolver") as resolver:
        async with session(accounts_server, "interceptor") as interceptor:
            assert resolver.nc is not None and interceptor.nc is not None

            async def answer(msg: Msg) -> None:
                await resolver.nc.publish(msg.reply, b"malformed")  # type: ignore[union-attr]

            await resolver.nc.subscribe(SUBJECTS.intercepted, queue="resolver", cb=answer)
            await resolver.nc.flush()
            reply = await interceptor.nc.request(SUBJECTS.intercepted, b"{", timeout=5)
            assert reply.data == b"malformed"
            assert resolver.violations == []

            await resolver.nc.publish("_INBOX.someone.else", b"forged verdict")
            await resolver.nc.flush()
            assert await resolver.refused()
