from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.audit.settings import AuditSettings
from services.common.settings import SettingsError
from services.interceptor.settings import InterceptorSettings


def test_environment_overrides_defaults() -> None:
    settings = InterceptorSettings.load(env={"TFW_DECIDE_TIMEOUT_S": "0.5", "TFW_LISTEN_PORT": "9"})
    assert settings.decide_timeout_s == 0.5
    assert settings.listen_port == 9


def test_a_bad_value_names_the_key_the_value_and_the_reason() -> None:
    with pytest.raises(SettingsError) as caught:
        InterceptorSettings.load(env={"TFW_DECIDE_TIMEOUT_S": "soon"})
    message = str(caught.value)
    assert "TFW_DECIDE_TIMEOUT_S" in message
    assert "'soon'" in message
    assert "number" in message


def test_secrets_are_not_echoed_in_errors() -> None:
    with pytest.raises(SettingsError) as caught:
        AuditSettings.load(env={"TFW_MONGODB_URI": "", "TFW_BATCH_SIZE": "0"})
    assert "TFW_BATCH_SIZE" in str(caught.value)


def test_a_config_file_is_read_and_unknown_keys_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("decide_timeout_s: 3\nfail_mode: allow\n")
    settings = InterceptorSettings.load(env={"TFW_CONFIG": str(good)})
    assert settings.fail_mode == "allow"
    bad = tmp_path / "bad.yaml"
    bad.write_text("decide_timout_s: 3\n")
    with pytest.raises(SettingsError, match=r"decide_timout_s.*unknown setting"):
        InterceptorSettings.load(env={"TFW_CONFIG": str(bad)})


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("fail_mode: allow\n")
    settings = InterceptorSettings.load(env={"TFW_CONFIG": str(path), "TFW_FAIL_MODE": "block"})
    assert settings.fail_mode == "block"


def test_a_service_with_a_bad_setting_exits_2_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "services.decider"],
        env={"TFW_BLOCK_STATUS": "200", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "decider: invalid configuration" in result.stderr
    assert "TFW_BLOCK_STATUS='200'" in result.stderr


def test_an_unknown_event_loop_is_refused_by_name() -> None:
    with pytest.raises(SettingsError) as caught:
        InterceptorSettings.load(env={"TFW_EVENT_LOOP": "trio"})
    assert "TFW_EVENT_LOOP" in str(caught.value)
    assert "'trio'" in str(caught.value)


@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("asyncio", "asyncio")])
def test_the_service_runs_on_the_chosen_event_loop(choice: str, expected: str) -> None:
    from services.common.ops import run_forever

    assert run_forever(_loop_name(), choice) == expected


def test_insisting_on_a_missing_uvloop_stops_the_service_with_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from services.common.ops import run_forever

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(SettingsError, match=r"TFW_EVENT_LOOP='uvloop': uvloop is not installed"):
        run_forever(never(), "uvloop")
    assert run_forever(_loop_name(), "auto") == "asyncio"  # auto falls back


async def _loop_name() -> str:
    """The top package of the running loop's class: uvloop, asyncio, or these tests'."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


# What _loop_name says of the loops below, which stand in for uvloop's.
TEST_LOOPS = "tests"


def _loop_refusing_eager_start() -> asyncio.AbstractEventLoop:
    """A loop that hands every task factory ``eager_start``, as uvloop 0.23 does; the
    eager factory of CPython 3.13.0 to 3.13.2 refuses that argument."""

    class Loop(asyncio.SelectorEventLoop):
        def create_task(self, coro, *, name=None, context=None):  # type: ignore[no-untyped-def]
            if self.get_task_factory() is asyncio.eager_task_factory:
                raise TypeError("factory() got an unexpected keyword argument 'eager_start'")
            return super().create_task(coro, name=name, context=context)

    return Loop()


def _loop_starting_tasks_lazily() -> asyncio.AbstractEventLoop:
    """A loop that accepts the eager factory but starts tasks on the next turn, as
    uvloop 0.23 does on CPython 3.13.3 and newer (it passes eager_start=None)."""

    class Loop(asyncio.SelectorEventLoop):
        def create_task(self, coro, *, name=None, context=None):  # type: ignore[no-untyped-def]
            return asyncio.Task(coro, loop=self, name=name, context=context)

    return Loop()


def _loop_starting_tasks_eagerly() -> asyncio.AbstractEventLoop:
    class Loop(asyncio.SelectorEventLoop):
        pass

    return Loop()


def test_how_a_loop_starts_eager_tasks_is_found_before_the_proxy_starts() -> None:
    import uvloop

    from services.common.ops import eager_task_start

    assert eager_task_start(asyncio.new_event_loop) == ("eager", "")
    assert eager_task_start(_loop_starting_tasks_eagerly) == ("eager", "")
    assert eager_task_start(_loop_starting_tasks_lazily) == ("lazy", "")
    start, problem = eager_task_start(_loop_refusing_eager_start)
    assert start == "refused" and "unexpected keyword argument 'eager_start'" in problem
    if sys.version_info[:2] == (3, 12):  # uvloop passes eager_start from 3.13 on only
        assert eager_task_start(uvloop.new_event_loop) == ("eager", "")


def test_the_proxy_takes_asyncios_loop_when_uvloop_cannot_run_its_eager_tasks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import uvloop

    from services.common.ops import run_forever

    monkeypatch.setattr(uvloop, "new_event_loop", _loop_refusing_eager_start)
    # Only a process that installs the eager factory (mitmproxy's master) needs it.
    assert run_forever(_loop_name(), "auto") == TEST_LOOPS
    with caplog.at_level(logging.WARNING, logger="services.common.ops"):
        assert run_forever(_loop_name(), "auto", eager_tasks=True) == "asyncio"
    assert "cannot run asyncio's eager task factory" in caplog.text
    assert "unexpected keyword argument 'eager_start'" in caplog.text
    assert "running on asyncio's own event loop instead" in caplog.text

    never = _never()
    with pytest.raises(SettingsError) as caught:
        run_forever(never, "uvloop", eager_tasks=True)
    shown = str(caught.value)
    assert "TFW_EVENT_LOOP='uvloop'" in shown
    assert "3.13.0 to 3.13.2" in shown and "TFW_EVENT_LOOP=asyncio" in shown
    assert inspect.getcoroutinestate(never) == inspect.CORO_CLOSED


@pytest.mark.parametrize(
    "new_loop", [_loop_starting_tasks_eagerly, _loop_starting_tasks_lazily]
)
def test_uvloop_is_kept_when_it_runs_the_eager_factory_eagerly_or_lazily(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    import uvloop

    from services.common.ops import run_forever

    monkeypatch.setattr(uvloop, "new_event_loop", new_loop)
    with caplog.at_level(logging.WARNING, logger="services.common.ops"):
        assert run_forever(_loop_name(), "auto", eager_tasks=True) == TEST_LOOPS
        assert run_forever(_loop_name(), "uvloop", eager_tasks=True) == TEST_LOOPS
    assert caplog.text == ""


async def _never() -> None:
    raise AssertionError("must not run")
