"""The interceptor's addon dispatch calls the addons that implement a hook, in chain
order, with mitmproxy's own error handling."""

from __future__ import annotations

import logging

import pytest
from mitmproxy import exceptions, http, options
from mitmproxy.master import Master
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from services.interceptor.hooks import HookIndex, use_hook_index


class Recorder:
    def __init__(self, name: str, calls: list[str], fail: bool = False,
                 halt: bool = False) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail
        self.halt = halt

    async def request(self, flow: http.HTTPFlow) -> None:
        self.calls.append(f"{self.name}:{flow.request.path}")
        if self.fail:
            raise RuntimeError("boom")
        if self.halt:
            raise exceptions.AddonHalt


class Silent:
    """An addon without the hook."""

    def __init__(self, name: str) -> None:
        self.name = name


class Parent:
    def __init__(self, calls: list[str]) -> None:
        self.name = "parent"
        self.addons = [Recorder("child", calls)]


@pytest.fixture
async def master() -> Master:
    return use_hook_index(Master(options.Options(), with_termlog=False))


async def _request(master: Master, path: str = "/x") -> None:
    flow = tflow.tflow()
    flow.request.path = path
    await master.addons.trigger_event(HttpRequestHook(flow))


async def test_only_the_addons_with_the_hook_are_called_in_chain_order(master: Master) -> None:
    calls: list[str] = []
    master.addons.add(Recorder("a", calls), Silent("s"), Parent(calls), Recorder("b", calls))
    await _request(master)
    assert calls == ["a:/x", "child:/x", "b:/x"]
    assert isinstance(master.addons, HookIndex)
    assert len(master.addons.hooked(HttpRequestHook(tflow.tflow()))) == 3


async def test_an_addon_that_raises_is_logged_and_the_next_still_runs(
    master: Master, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    master.addons.add(Recorder("a", calls, fail=True), Recorder("b", calls))
    with caplog.at_level(logging.ERROR):
        await _request(master)
    assert calls == ["a:/x", "b:/x"]
    assert "Addon error: boom" in caplog.text


async def test_addon_halt_stops_the_chain(master: Master) -> None:
    calls: list[str] = []
    master.addons.add(Recorder("a", calls, halt=True), Recorder("b", calls))
    await _request(master)
    assert calls == ["a:/x"]


async def test_adding_and_removing_addons_is_seen_by_the_next_hook(master: Master) -> None:
    calls: list[str] = []
    first = Recorder("a", calls)
    master.addons.add(first)
    await _request(master, "/1")
    master.addons.add(Recorder("b", calls))
    await _request(master, "/2")
    master.addons.remove(first)
    await _request(master, "/3")
    assert calls == ["a:/1", "a:/2", "b:/2", "b:/3"]


async def test_the_index_must_come_before_any_addon() -> None:
    plain = Master(options.Options(), with_termlog=False)
    plain.addons.add(Silent("s"))
    with pytest.raises(RuntimeError):
        use_hook_index(plain)

