"""The local stack's nats-server: one Go thread unless the environment asks otherwise,
as nats-server itself reports it on its monitoring port."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tfw.stack import NATS_GOMAXPROCS, Stack, free_port


def _varz(env: dict[str, str] | None, data: Path) -> dict[str, object]:
    monitor = free_port()
    with Stack(data) as stack:
        stack.start_nats(extra=["-m", str(monitor)], env=env)
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as reply:
            varz: dict[str, object] = json.load(reply)
    return varz


def test_nats_server_runs_on_one_thread_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    assert _varz(None, tmp_path)["gomaxprocs"] == int(NATS_GOMAXPROCS) == 1


def test_gomaxprocs_from_the_environment_wins(tmp_path: Path) -> None:
    env = {**os.environ, "GOMAXPROCS": "3"}
    assert _varz(env, tmp_path)["gomaxprocs"] == 3
