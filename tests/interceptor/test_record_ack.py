"""A verdict takes effect only once its decision record is stored: the interceptor
receives JetStream's acknowledgement of the record beside the verdict (on a real
nats-server), and anything but a good acknowledgement is the fail mode."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.common.contracts import (
    RECORD_ACK_HEADER,
    Decision,
    InterceptedRequest,
    Subjects,
    Verdict,
    encode,
    new_decision_id,
)
from services.interceptor.ask import RECORD_FAILED, Asker, FailMode
from tests.support.decisions import intercepted

Answer = Callable[[NATS, Msg, Subjects], Awaitable[None]]


@dataclass
class Bus:
    nc: NATS
    subjects: Subjects


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    subjects = Subjects("tack" + secrets.token_hex(3))
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(
        name=subjects.decision_stream, subjects=[f"{subjects.prefix}.v1.decisions.>"]
    )
    try:
        yield Bus(nc, subjects)
    finally:
        try:
            await js.delete_stream(subjects.decision_stream)
        except nats.js.errors.NotFoundError:
            pass
        await nc.close()


packet = intercepted


def verdict_for(msg: Msg) -> bytes:
    decision_id = InterceptedRequest.from_bytes(msg.data).id
    return encode(Verdict(decision_id=decision_id, decision=Decision.ALLOW))


async def send_verdict(nc: NATS, msg: Msg, stream: str) -> None:
    await nc.publish(msg.reply, verdict_for(msg), headers={RECORD_ACK_HEADER: stream})


async def send_record(nc: NATS, msg: Msg, subjects: Subjects, expected_stream: str) -> None:
    """The record, as the decider publishes it: its acknowledgement to the asker."""
    await nc.publish(
        f"{subjects.prefix}.v1.decisions.allow",
        b"{}",
        reply=msg.reply,
        headers={"Nats-Msg-Id": secrets.token_hex(8), "Nats-Expected-Stream": expected_stream},
    )


async def verdict_then_record(nc: NATS, msg: Msg, subjects: Subjects) -> None:
    """What the decider does for a current interceptor."""
    await send_verdict(nc, msg, subjects.decision_stream)
    await send_record(nc, msg, subjects, subjects.decision_stream)


async def record_then_verdict(nc: NATS, msg: Msg, subjects: Subjects) -> None:
    """The acknowledgement may well arrive first: the order must not matter."""
    await send_record(nc, msg, subjects, subjects.decision_stream)
    await asyncio.sleep(0.2)
    await send_verdict(nc, msg, subjects.decision_stream)


async def verdict_without_record(nc: NATS, msg: Msg, subjects: Subjects) -> None:
    await send_verdict(nc, msg, subjects.decision_stream)


async def record_to_nowhere(nc: NATS, msg: Msg, subjects: Subjects) -> None:
    """No stream takes the record: no acknowledgement comes (nats-server tells only the
    publisher that nobody listened)."""
    await send_verdict(nc, msg, subjects.decision_stream)
    await nc.publish(f"{subjects.prefix}.v1.nowhere", b"{}", reply=msg.reply)


async def record_refused(nc: NATS, msg: Msg, subjects: Subjects) -> None:
    """The stream refuses the record (here: it expects another stream name)."""
    await send_verdict(nc, msg, subjects.decision_stream)
    await send_record(nc, msg, subjects, "NOT_THIS_ONE")


async def record_to_another_stream(nc: NATS, msg: Msg, subjects: Subjects) -> None:
    """The verdict names another stream than the one that stored the record."""
    await send_verdict(nc, msg, "ELSEWHERE")
    await send_record(nc, msg, subjects, subjects.decision_stream)


async def asking(bus: Bus, answer: Answer, timeout_s: float = 2.0) -> Verdict:
    responder = await nats.connect(bus.nc.connected_url.geturl())  # type: ignore[union-attr]

    async def on_request(msg: Msg) -> None:
        await answer(responder, msg, bus.subjects)

    await responder.subscribe(bus.subjects.intercepted, cb=on_request)
    await responder.flush()
    try:
        return await Asker(bus.nc).ask(
            bus.subjects.intercepted, packet(new_decision_id()), timeout_s
        )
    finally:
        await responder.close()


@pytest.mark.parametrize("answer", [verdict_then_record, record_then_verdict])
async def test_a_verdict_is_applied_once_its_record_is_acknowledged(
    bus: Bus, answer: Answer
) -> None:
    verdict = await asking(bus, answer)
    assert verdict.decision is Decision.ALLOW
    info = await bus.nc.jetstream().stream_info(bus.subjects.decision_stream)
    assert info.state.messages >= 1


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (record_to_nowhere, "record_timeout"),
        (record_refused, "record_failed"),
        (record_to_another_stream, "record_failed"),
        (verdict_without_record, "record_timeout"),
    ],
)
async def test_a_verdict_whose_record_is_not_stored_is_the_fail_mode(
    bus: Bus, answer: Answer, cause: str
) -> None:
    with pytest.raises(FailMode) as failure:
        await asking(bus, answer, timeout_s=1.0)
    assert failure.value.cause == cause
    assert failure.value.reason == RECORD_FAILED


async def test_without_a_decision_service_the_ask_fails_at_once(bus: Bus) -> None:
    """nats-server says nobody listens: the cause is that, not the (long) timeout."""
    with pytest.raises(FailMode) as failure:
        await Asker(bus.nc).ask(bus.subjects.intercepted, packet(new_decision_id()), 60.0)
    assert failure.value.cause == "no_responders"


async def test_requests_asked_at_once_on_a_new_asker_each_get_their_own_verdict(
    bus: Bus,
) -> None:
    """The first requests of a fresh interceptor, asked at once: each gets its own
    verdict and record acknowledgement, through one reply subscription."""
    responder = await nats.connect(bus.nc.connected_url.geturl())  # type: ignore[union-attr]

    async def on_request(msg: Msg) -> None:
        await verdict_then_record(responder, msg, bus.subjects)

    await responder.subscribe(bus.subjects.intercepted, cb=on_request)
    await responder.flush()
    asker = Asker(bus.nc)
    try:
        ids = [new_decision_id() for _ in range(20)]
        verdicts = await asyncio.gather(
            *(asker.ask(bus.subjects.intercepted, packet(i), 5.0) for i in ids)
        )
    finally:
        await responder.close()
    assert [v.decision_id for v in verdicts] == ids
    inboxes = [s for s in bus.nc._subs.values() if s.subject.startswith(asker._prefix)]
    assert len(inboxes) == 1
