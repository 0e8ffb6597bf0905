"""Requests handled side by side (services.common.bus.Handlers), with stand-in messages."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from services.common.bus import Handlers


class Message:
    """What a handler reads of a nats-py message here."""

    def __init__(self, subject: str) -> None:
        self.subject = subject


def _msg(subject: str) -> Any:
    return Message(subject)


async def test_a_request_that_waits_holds_no_other() -> None:
    handlers = Handlers(4)
    release = asyncio.Event()
    done: list[str] = []

    async def handle(msg: Any) -> None:
        if msg.subject == "slow":
            await release.wait()
        done.append(msg.subject)

    take = handlers.of(handle)
    await take(_msg("slow"))
    await take(_msg("quick"))
    assert done == ["quick"]
    assert len(handlers) == 1
    release.set()
    await handlers.finish()
    assert done == ["quick", "slow"]
    assert len(handlers) == 0


async def test_a_request_that_never_waits_is_handled_within_its_turn() -> None:
    handlers = Handlers(1)
    done: list[str] = []

    async def handle(msg: Any) -> None:
        done.append(msg.subject)

    await handlers.of(handle)(_msg("a"))
    assert done == ["a"]  # no task left for a later turn of the loop
    await handlers.of(handle)(_msg("b"))  # and its slot is free again
    assert done == ["a", "b"]


async def test_at_most_the_limit_are_in_hand_and_the_next_waits_for_a_slot() -> None:
    handlers = Handlers(2)
    release = asyncio.Event()
    started: list[str] = []

    async def handle(msg: Any) -> None:
        started.append(msg.subject)
        await release.wait()

    take = handlers.of(handle)
    await take(_msg("1"))
    await take(_msg("2"))
    third = asyncio.create_task(take(_msg("3")))
    await asyncio.sleep(0.05)
    assert started == ["1", "2"] and not third.done()
    release.set()
    await third
    await handlers.finish()
    assert started == ["1", "2", "3"]


async def test_a_handler_that_raises_is_logged_and_frees_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handlers = Handlers(1)

    async def handle(msg: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    take = handlers.of(handle)
    with caplog.at_level(logging.ERROR):
        await take(_msg("tfw.v1.enriched"))
        await handlers.finish()
        await asyncio.wait_for(take(_msg("tfw.v1.enriched")), 1)  # the slot came back
        await handlers.finish()
    failures = [r for r in caplog.records if "tfw.v1.enriched" in r.getMessage()]
    assert len(failures) == 2 and "boom" in (failures[0].exc_text or "")


async def test_cancelled_requests_free_their_slots() -> None:
    handlers = Handlers(1)

    async def handle(msg: Any) -> None:
        await asyncio.Event().wait()

    take = handlers.of(handle)
    await take(_msg("stuck"))
    handlers.cancel()
    await handlers.finish()
    assert len(handlers) == 0
    await asyncio.wait_for(take(_msg("next")), 1)
    handlers.cancel()
    await handlers.finish()


async def test_once_cancelled_no_request_starts() -> None:
    handlers = Handlers(1)
    started: list[str] = []

    async def handle(msg: Any) -> None:
        started.append(msg.subject)
        await asyncio.Event().wait()

    take = handlers.of(handle)
    await take(_msg("held"))
    queued = asyncio.create_task(take(_msg("queued")))  # waits for the slot
    await asyncio.sleep(0)
    handlers.cancel()
    await handlers.finish()
    await asyncio.wait_for(queued, 1)
    await take(_msg("late"))
    assert started == ["held"]
    assert len(handlers) == 0
