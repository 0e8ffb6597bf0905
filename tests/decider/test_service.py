"""The decider on a real nats-server: rules from the KV bucket, hot reload under load
without a lost request, bad pushes rejected whole, every decision recorded."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.common.contracts import (
    RECORD_ACK_HEADER,
    Decision,
    DecisionRecord,
    EnrichedEvent,
    RuleSetDocument,
    Subjects,
    Verdict,
    decode,
    encode,
)
from services.common.settings import SettingsError
from services.decider.legacy import import_xml
from services.decider.rules import RuleSet, compile_rules
from services.decider.service import Decider
from services.decider.settings import DeciderSettings
from tests.support.decisions import WALL_RULES, alice_to_bob, remove_decider_state
from tfw.cli import main as tfw
from tfw.stack import Stack

V1 = WALL_RULES
V2 = V1 + "  - {name: Log everything, then: [{log: seen}]}\n"


def event() -> EnrichedEvent:
    return alice_to_bob()


class Running:
    def __init__(self, decider: Decider, nc: NATS, subjects: Subjects, url: str) -> None:
        self.decider = decider
        self.nc = nc
        self.subjects = subjects
        self.url = url
        self.swapped = asyncio.Event()
        self.history: list[str] = []
        original = decider.use

        def use(rules: RuleSet) -> None:
            original(rules)
            self.history.append(rules.version)
            self.swapped.set()

        decider.use = use  # type: ignore[method-assign]

    async def push(self, source: str, tmp: Path) -> int:
        """Push through the real command, as an operator would."""
        path = tmp / f"rules-{secrets.token_hex(3)}.yaml"
        path.write_text(source)
        argv = [
            "rules",
            "push",
            str(path),
            "--nats-url",
            self.url,
            "--prefix",
            self.subjects.prefix,
        ]
        return await asyncio.to_thread(tfw, argv)

    async def wait_for(self, version: str) -> None:
        async with asyncio.timeout(10):
            while self.decider.rules is None or self.decider.rules.version != version:
                self.swapped.clear()
                await self.swapped.wait()

    async def ask(self) -> Verdict:
        reply = await self.nc.request(self.subjects.enriched, encode(event()), timeout=10)
        return decode(Verdict, reply.data)


def settings_for(nats_url: str, prefix: str, **extra: str) -> DeciderSettings:
    # JetStream reserves a stream's max_bytes up front: keep test streams small.
    return DeciderSettings(
        nats_url=nats_url, subject_prefix=prefix, stream_max_bytes=8 * 1024**2, **extra
    )


remove = remove_decider_state


@pytest.fixture
async def running(nats_url: str) -> AsyncIterator[Running]:
    prefix = "tdec" + secrets.token_hex(3)
    settings = settings_for(nats_url, prefix)
    decider = Decider(settings)
    await decider.start()
    nc = await nats.connect(nats_url)
    try:
        yield Running(decider, nc, Subjects(prefix), nats_url)
    finally:
        await decider.stop()
        await remove(nc, Subjects(prefix))
        await nc.close()


async def test_a_pushed_rule_set_becomes_active_and_every_verdict_names_its_version(
    running: Running, tmp_path: Path
) -> None:
    assert await running.push(V1, tmp_path) == 0
    await running.wait_for(compile_rules(V1).version)
    verdict = await running.ask()
    assert verdict.decision.value == "block"
    assert verdict.ruleset_version == compile_rules(V1).version
    assert [rule.name for rule in verdict.rules] == ["Research may not message Trading"]


async def test_requests_in_flight_during_a_hot_reload_all_get_a_verdict(
    running: Running, tmp_path: Path
) -> None:
    v1, v2 = compile_rules(V1).version, compile_rules(V2).version
    assert await running.push(V1, tmp_path) == 0
    await running.wait_for(v1)

    async def load(count: int) -> list[Verdict]:
        return list(await asyncio.gather(*(running.ask() for _ in range(count))))

    before = asyncio.ensure_future(load(300))
    assert await running.push(V2, tmp_path) == 0
    during = asyncio.ensure_future(load(300))
    await running.wait_for(v2)
    answered = await before + await during
    after = await load(50)

    assert len(answered) == 600
    assert all(v.decision.value == "block" for v in answered + after)
    assert {v.ruleset_version for v in answered} <= {v1, v2}
    assert {v.ruleset_version for v in after} == {v2}
    assert all("Log everything" in [r.name for r in v.rules] for v in after)


async def test_a_bad_push_is_rejected_whole_and_the_running_rules_keep_working(
    running: Running, tmp_path: Path
) -> None:
    v1 = compile_rules(V1).version
    assert await running.push(V1, tmp_path) == 0
    await running.wait_for(v1)
    assert await running.push(V1 + "  - {name: broken, then: [explode]}\n", tmp_path) == 1
    verdict = await running.ask()
    assert verdict.ruleset_version == v1


async def test_a_bad_value_written_to_the_bucket_behind_the_tools_back_is_ignored(
    running: Running, tmp_path: Path
) -> None:
    v1 = compile_rules(V1).version
    assert await running.push(V1, tmp_path) == 0
    await running.wait_for(v1)
    kv = await running.nc.jetstream().key_value(running.subjects.rules_bucket)
    bad = RuleSetDocument(version="forged", source="rules: [{name: x, then: [explode]}]")
    await kv.put(running.subjects.rules_key, encode(bad))
    await kv.put(running.subjects.rules_key, b"not json")
    # A good push after the bad ones proves the watcher read past them.
    assert await running.push(V2, tmp_path) == 0
    await running.wait_for(compile_rules(V2).version)
    assert running.history[-2:] == [v1, compile_rules(V2).version]


async def test_every_decision_is_in_the_stream_before_its_verdict_arrives(
    running: Running, tmp_path: Path
) -> None:
    assert await running.push(V1, tmp_path) == 0
    await running.wait_for(compile_rules(V1).version)
    verdict = await running.ask()
    js = running.nc.jetstream()
    message = await js.get_last_msg(
        running.subjects.decision_stream, running.subjects.decision(verdict.decision)
    )
    assert message.headers is not None
    assert message.headers.get("Nats-Msg-Id") == verdict.decision_id


async def test_a_2021_xml_rule_file_is_converted_at_start(
    nats_url: str, shared_cases: Path
) -> None:
    prefix = "tdec" + secrets.token_hex(3)
    decider = Decider(settings_for(nats_url, prefix, rules_file=str(shared_cases / "rules.xml")))
    await decider.start()
    try:
        assert decider.rules is not None
        assert "Research may not message Trading" in [r.name for r in decider.rules.rules]
    finally:
        await decider.stop()
        nc = await nats.connect(nats_url)
        await remove(nc, Subjects(prefix))
        await nc.close()


async def test_a_bad_rule_file_stops_the_decider_at_start_naming_it(
    nats_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{name: x, then: [explode]}]\n")
    prefix = "tdec" + secrets.token_hex(3)
    decider = Decider(settings_for(nats_url, prefix, rules_file=str(bad)))
    try:
        with pytest.raises(SettingsError, match="TFW_RULES_FILE") as caught:
            await decider.start()
        assert "explode" in str(caught.value)
    finally:
        await decider.stop()
        nc = await nats.connect(nats_url)
        await remove(nc, Subjects(prefix))
        await nc.close()


async def test_a_2021_xml_file_can_be_pushed_and_one_with_import_problems_is_refused(
    running: Running, shared_cases: Path
) -> None:
    url, prefix = running.url, running.subjects.prefix
    good = ["rules", "push", str(shared_cases / "rules.xml"), "--nats-url", url, "--prefix", prefix]
    assert await asyncio.to_thread(tfw, good) == 0
    await running.wait_for(
        compile_rules(import_xml((shared_cases / "rules.xml").read_text(), "rules.xml")[0]).version
    )
    kv = await running.nc.jetstream().key_value(running.subjects.rules_bucket)
    document = decode(RuleSetDocument, (await kv.get(running.subjects.rules_key)).value or b"")
    assert document.internal_tenants == [
        "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11",
        "6e2d4c88-1a7b-4b5e-8c3f-2d9e7a0b5c22",
    ]
    upstream = shared_cases / "upstream" / "teamsfirewall.config"
    refused = ["rules", "push", str(upstream), "--nats-url", url, "--prefix", prefix]
    assert await asyncio.to_thread(tfw, refused) == 1
    assert await asyncio.to_thread(tfw, [*refused, "--accept-import-problems"]) == 0


async def test_push_reports_an_unreachable_server_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(V1)
    argv = ["rules", "push", str(rules), "--nats-url", "nats://127.0.0.1:9", "--prefix", "x"]
    assert await asyncio.to_thread(tfw, argv) == 1
    assert "no answer from nats://127.0.0.1:9" in capsys.readouterr().err


async def test_the_decider_process_answers_as_soon_as_it_reports_ready(
    nats_url: str, shared_cases: Path, tmp_path: Path
) -> None:
    prefix = "tdec" + secrets.token_hex(3)
    stack = Stack(tmp_path, log=io.StringIO(), nats_url=nats_url)
    env = {
        "TFW_SUBJECT_PREFIX": prefix,
        "TFW_RULES_FILE": str(shared_cases / "rules.xml"),
        "TFW_STREAM_MAX_BYTES": str(8 * 1024**2),
    }
    nc = await nats.connect(nats_url)
    try:
        await asyncio.to_thread(stack.start_service, "decider", env)
        reply = await nc.request(Subjects(prefix).enriched, encode(event()), timeout=10)
        verdict = decode(Verdict, reply.data)
        assert verdict.decision.value == "block"
        assert verdict.rules[0].name == "Research may not message Trading"
    finally:
        await asyncio.to_thread(stack.stop)
        await remove(nc, Subjects(prefix))
        await nc.close()


async def test_a_large_rule_set_is_swapped_in_under_load_without_a_lost_request(
    running: Running, tmp_path: Path
) -> None:
    big = V1 + "".join(
        f"  - {{name: log {i}, when: {{actors: ['u{i}@firm.example']}}, then: [{{log: x}}]}}\n"
        for i in range(1000)
    )
    v1, v_big = compile_rules(V1).version, compile_rules(big).version
    assert await running.push(V1, tmp_path) == 0
    await running.wait_for(v1)

    async def steady(stop: asyncio.Event) -> list[Verdict]:
        answered = []
        while not stop.is_set():
            answered += await asyncio.gather(*(running.ask() for _ in range(20)))
        return answered

    stop = asyncio.Event()
    load = asyncio.ensure_future(steady(stop))
    assert await running.push(big, tmp_path) == 0
    await running.wait_for(v_big)
    stop.set()
    answered = await load
    assert answered and all(v.decision.value == "block" for v in answered)
    assert {v.ruleset_version for v in answered} <= {v1, v_big}
    assert (await running.ask()).ruleset_version == v_big


async def answers(running: Running, event: EnrichedEvent, count: int) -> list[Msg]:
    """What arrives on a fresh inbox for ``event``: ``count`` messages, or fewer
    within two seconds."""
    inbox = running.nc.new_inbox()
    got: list[Msg] = []
    sub = await running.nc.subscribe(inbox)
    await running.nc.publish(running.subjects.enriched, encode(event), reply=inbox)
    try:
        async with asyncio.timeout(2):
            while len(got) < count:
                got.append(await sub.next_msg(timeout=2))
    except (TimeoutError, nats.errors.TimeoutError):
        pass
    finally:
        await sub.unsubscribe()
    return got


async def test_the_interceptor_gets_the_verdict_and_the_record_acknowledgement_beside_it(
    running: Running, tmp_path: Path
) -> None:
    assert await running.push(V1, tmp_path) == 0
    await running.wait_for(compile_rules(V1).version)
    asked = event()
    asked.record_ack = True
    verdict_msg, ack_msg = await answers(running, asked, 2)
    stream = running.subjects.decision_stream
    assert verdict_msg.headers == {RECORD_ACK_HEADER: stream}
    assert decode(Verdict, verdict_msg.data).decision_id == asked.id
    ack = orjson.loads(ack_msg.data)
    assert ack["stream"] == stream and isinstance(ack["seq"], int)
    stored = await running.nc.jetstream().get_msg(stream, ack["seq"])
    assert decode(DecisionRecord, stored.data).decision_id == asked.id


@pytest.mark.parametrize("record_ack", [False, True])
async def test_without_a_stream_to_record_in_every_decision_is_blocked_at_once(
    nats_url: str, tmp_path: Path, record_ack: bool
) -> None:
    prefix = "tdec" + secrets.token_hex(3)
    decider = Decider(settings_for(nats_url, prefix, record_check_s="0.1"))
    await decider.start()
    nc = await nats.connect(nats_url)
    running = Running(decider, nc, Subjects(prefix), nats_url)
    try:
        assert await running.push(V1, tmp_path) == 0
        await running.wait_for(compile_rules(V1).version)
        await nc.jetstream().delete_stream(running.subjects.decision_stream)
        async with asyncio.timeout(10):  # the decider's check notices (every 0.1 s)
            while decider._records_flow:
                await asyncio.sleep(0.05)
        asked = event()
        asked.record_ack = record_ack
        (only,) = await answers(running, asked, 2)
        verdict = decode(Verdict, only.data)
        assert not only.headers
        assert verdict.decision is Decision.BLOCK
        assert verdict.reason == "the decision could not be recorded: fail closed"
    finally:
        await decider.stop()
        await remove(nc, running.subjects)
        await nc.close()
