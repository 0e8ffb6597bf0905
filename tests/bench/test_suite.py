"""``tfw bench --tiny`` end to end, as a user runs it: its own servers, every figure
printed, the targets summed up, the figures written with ``--json``. Timings are
never asserted; what the run must show is that every send took the whole path."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import orjson
import pytest

from tfw.stack import ROOT

pytestmark = pytest.mark.e2e

SECTIONS = (
    "1. End to end, HTTPS keep-alive",
    "2. Latency added at 1 connection",
    "3. New TLS connections per second",
    "4. Decider alone",
    "5. Resolver",
    "6. Audit: the archive catching up, then beside the proxy",
    "7. Scaling: interceptor processes",
    "The bus on this machine: one nats-py request-reply (calibration)",
    "CPU per request by process (decision path, 1 interceptor, archive paused)",
    "CPU per request by process (decision path, 2 interceptors, archive paused)",
    "CPU per request by process (whole firewall, the archive beside the proxy)",
    "Targets",
)


# What a bench run starts: its own servers and services, the baselines, the upstream.
OURS = ("tfw.bench.", "-m services.", "nats-server", "secantusd", "mitmdump")


def _ours_running() -> set[int]:
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True,
                             check=True)
    found = set()
    for line in listing.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if any(mark in args for mark in OURS):
            found.add(int(pid))
    return found


def _line_with(stdout: str, text: str) -> str:
    """The first line of the run's output that holds ``text``."""
    return next(line for line in stdout.splitlines() if text in line)


@pytest.fixture(scope="module")
def running_before() -> set[int]:
    return _ours_running()


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, running_before: set[int]
) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tfw", "bench", "--tiny", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout, orjson.loads(out.read_bytes())


def test_every_figure_of_the_issue_is_printed(tiny_run: tuple[str, dict[str, Any]]) -> None:
    stdout, _ = tiny_run
    for title in SECTIONS:
        assert title in stdout, title


def test_every_send_of_the_allowed_mix_went_the_whole_way(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, figures = tiny_run
    firewall = next(line for line in stdout.splitlines() if line.strip().startswith("firewall:"))
    assert re.search(r"statuses 201×\d+;", firewall), firewall
    assert "errors 0" in firewall
    verdicts = _line_with(stdout, "firewall verdicts:")
    assert re.search(r"\d+ allowed, 0 blocked", verdicts), verdicts
    audit = figures["audit"]
    assert audit["decided"] > 0
    assert audit["published"] == audit["decided"]
    assert audit["archived"] == audit["decided"]
    assert "(every one in the stream and the archive)" in stdout


def test_the_archive_caught_up_and_was_measured_beside_the_proxy(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, figures = tiny_run
    audit = figures["audit"]
    assert audit["backlog"] > 0  # items 1 to 7 left their records in the stream
    assert audit["backlog_seconds"] is not None
    assert audit["backlog_cores"]["audit"] > 0 and audit["backlog_cores"]["secantusdb"] > 0
    beside = figures["beside_archive"]
    assert beside["caught_up_after_s"] is not None
    assert beside["firewall"] > 0 and beside["stock"] > 0
    shown = _line_with(stdout, "not a target:")
    assert f"{beside['ratio']:.2f}× stock" in shown


def test_cpu_is_reported_for_every_process_of_the_firewall(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, figures = tiny_run
    tables = figures["cpu_ms_per_request"]
    one = tables["decision path, 1 interceptor, archive paused"]
    two = tables["decision path, 2 interceptors, archive paused"]
    beside = tables["whole firewall, the archive beside the proxy"]
    for name in ("interceptor", "resolver", "decider", "nats", "secantusdb"):
        assert name in one and name in two and name in beside
    assert "interceptor-2" in two
    # Items 1 to 7 measure the decision path: the audit service is stopped meanwhile.
    assert "audit" not in one and "audit" not in two
    assert beside["audit"] > 0 and beside["secantusdb"] > 0


def test_each_target_is_judged_with_its_measured_figure(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, figures = tiny_run
    judged = figures["targets"]
    assert set(judged) == {
        "1. decision path / stock mitmdump throughput",
        "2. decision path: added latency p50",
        "2. decision path: added latency p99",
        "4. decider verdict at 100 rules",
    }
    assert figures["problems"] == []
    assert "Problems" not in stdout
    for name, target in judged.items():
        line = next(line for line in stdout.splitlines() if line.strip().startswith(name))
        assert line.rstrip().endswith("NOT MET" if not target["met"] else " met")


def test_the_component_benchmarks_gave_their_figures(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, figures = tiny_run
    assert set(figures["decider_us"]) == {"10", "100", "1000"}
    assert set(figures["decider_with_record_us"]) == {"10", "100", "1000"}
    resolver = figures["resolver"]
    assert resolver["cold_calls"] > 0
    assert resolver["warm2_participants"] > 1000


def test_item_2_shows_each_rounds_own_added_p50(tiny_run: tuple[str, dict[str, Any]]) -> None:
    stdout, figures = tiny_run
    rounds = figures["latency_added_ms"]["rounds_p50"]
    assert len(rounds) == 1  # the tiny size runs one round
    assert f"{rounds[0]:+.2f} ms" in _line_with(stdout, "each round's own added p50")


def test_item_2_splits_each_rounds_added_p50_into_cpu_and_waiting(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, figures = tiny_run
    added = figures["latency_added_ms"]
    extra, waiting = added["rounds_extra_cpu_ms"], added["rounds_waiting_ms"]
    assert len(extra) == len(waiting) == len(added["rounds_p50"]) == 1
    assert waiting[0] == pytest.approx(added["rounds_p50"][0] - extra[0])
    assert f"{extra[0]:.2f} ms" in _line_with(stdout, "CPU per request beyond the lean")
    assert f"{waiting[0]:+.2f} ms" in _line_with(stdout, "added p50 beyond that CPU")
    # Every process on the firewall's path spent CPU on the one-connection requests,
    # and the line shows each of them; the lean master is the proxy alone.
    firewall = figures["cpu_ms_per_request"]["1 connection, firewall"]
    shown = _line_with(stdout, "CPU per request at 1 connection")
    for name in ("interceptor", "resolver", "decider", "nats"):
        assert firewall[name] > 0
        assert f"{name} {firewall[name]:.2f}" in shown
    assert set(figures["cpu_ms_per_request"]["1 connection, lean master"]) == {
        "lean", "upstream (stand-in)", "load generator (bench)"}


def test_the_bus_is_calibrated_against_the_issues_reference(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, figures = tiny_run
    bus = figures["bus"]
    assert bus["requests"] == 50  # every request-reply of the tiny size was answered
    assert 0 < bus["p50_ms"] <= bus["p99_ms"]
    assert 0 < bus["paced_p50_ms"] <= bus["paced_p99_ms"]
    assert bus["client_cpu_us"] > 0
    assert figures["machine"]["request_reply_ms"] == bus["p50_ms"]
    shown = _line_with(stdout, "this machine's bus:")
    assert f"took {bus['p50_ms']:.2f} ms p50" in shown and "reference's 0.4 ms" in shown


def test_nothing_is_left_running(
    tiny_run: tuple[str, dict[str, Any]], running_before: set[int]
) -> None:
    assert tiny_run
    # Servers, services (the restarted audit included), baselines, upstream: all gone.
    assert _ours_running() - running_before == set()
