"""``tfw demo`` end to end, as a user runs it: its own servers, the shipped demo data
(and a HAR capture), a table on stdout, one JSON line per request with ``--out``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tfw.stack import ROOT

pytestmark = pytest.mark.e2e

DEMO_DATA = ROOT / "tfw" / "demo_data"


def run_demo(
    out: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, "-m", "tfw", "demo", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
        env={**os.environ, **(env or {})},
    )
    lines = [orjson.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return completed, {line["id"]: line for line in lines}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory):
    return run_demo(tmp_path_factory.mktemp("demo") / "out.jsonl")


@pytest.fixture(scope="module")
def har_run(tmp_path_factory: pytest.TempPathFactory):
    return run_demo(
        tmp_path_factory.mktemp("demo-har") / "out.jsonl",
        "--scenario", str(DEMO_DATA / "sample.har"),
    )


def test_the_demo_exits_0_and_prints_a_row_per_request(default_run) -> None:
    completed, lines = default_run
    assert completed.returncode == 0, completed.stderr[-2000:]
    table = completed.stdout.splitlines()
    assert table[0].split() == ["request", "actor", "action", "conversation", "verdict", "rules"]
    assert len(lines) == 33
    assert all(any(row.startswith(f"{key} ") for row in table) for key in lines)
    assert "33 requests:" in completed.stdout


def test_every_demo_request_has_its_decision_record(default_run) -> None:
    _, lines = default_run
    missing = [key for key, line in lines.items() if line["decision"] is None]
    assert missing == []


def test_a_blocked_wall_crossing_never_reaches_teams(default_run) -> None:
    _, lines = default_run
    d01 = lines["d01"]
    assert d01["client"]["status"] == 403
    assert d01["client"]["received"] is False
    assert d01["decision"]["decision"] == "block"
    assert "Research may not message Sales" in [r["name"] for r in d01["decision"]["rules"]]


def test_a_meeting_send_reaches_teams_with_the_tag_header(default_run) -> None:
    _, lines = default_run
    d13 = lines["d13"]
    assert d13["client"]["received"] is True
    assert d13["client"]["received_headers"]["x-meridian-chat-type"] == "MEETINGCHAT"
    assert d13["decision"]["conversation"]["type"] == "meeting"


def test_an_unreadable_credential_fails_closed(default_run) -> None:
    _, lines = default_run
    d31 = lines["d31"]
    assert d31["client"]["received"] is False
    assert "fail closed" in d31["decision"]["reason"]


def test_a_har_capture_is_replayed_with_ids_from_comments_or_positions(har_run) -> None:
    completed, lines = har_run
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert set(lines) == {
        "omar-authz", "omar-profile", "nora-authz", "nora-profile",
        "capture-send", "capture-typing", "7", "not-teams",
    }
    assert lines["omar-authz"]["client"]["status"] == 200  # sign-in lookups pass undecided
    assert lines["omar-authz"]["decision"] is None
    assert lines["capture-send"]["client"]["received"] is True
    assert lines["capture-send"]["decision"]["decision"] == "allow"
    assert lines["7"]["decision"]["action"] == "other"
    assert lines["capture-typing"]["client"]["received"] is False
    assert lines["capture-typing"]["decision"]["decision"] == "block"
    assert lines["not-teams"]["client"]["skipped"] is True
    assert lines["not-teams"]["decision"] is None


def test_a_missing_organisation_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    completed, lines = run_demo(tmp_path / "out.jsonl", "--org", str(tmp_path / "none.yaml"))
    assert completed.returncode == 2
    assert "none.yaml" in completed.stderr
    assert lines == {}


def test_a_service_that_refuses_to_start_makes_the_demo_exit_1_with_its_log(
    tmp_path: Path,
) -> None:
    completed, lines = run_demo(tmp_path / "out.jsonl", env={"TFW_LOG_LEVEL": "LOUD"})
    assert completed.returncode == 1
    assert "the stack failed" in completed.stderr
    assert "TFW_LOG_LEVEL" in completed.stderr  # the refusing service says why, in the log tail
    assert lines == {}
