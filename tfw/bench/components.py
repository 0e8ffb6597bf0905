"""Items 4 and 5: the decider and resolver benchmarks of their own services, each run
in its own process (``services.decider.bench``, ``services.resolver.bench``); their
output is shown as it is and their key figures are taken into the summary."""

from __future__ import annotations

import re
import subprocess
import sys

from tfw.bench.report import Report
from tfw.stack import ROOT

COMPONENT_TIMEOUT_S = 300
_DECIDER_LINE = re.compile(
    r"^\s*(\d+) rules: verdict median\s+([\d.]+) µs .*; with the record ([\d.]+) µs"
)
_COLD_CALLS = re.compile(r"^\s*calls (\d+):")
_COLD_WALL = re.compile(r"^\s*wall time (\d+) ms")
_WARM_HEAD = re.compile(r"^warm, (\S+) \((\d+) participants\)")
_ENRICH = re.compile(r"^\s*enrich\s+p50 ([\d.]+) ms\s+p99 ([\d.]+) ms")


def _run(module: str, args: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=COMPONENT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 1, f"{module} did not finish within {COMPONENT_TIMEOUT_S} s"
    return done.returncode, done.stdout + done.stderr


def decider_figures(output: str) -> dict[int, tuple[float, float]]:
    """µs per verdict and per decision with its record, by rule count, from the
    decider benchmark's output."""
    figures = {}
    for line in output.splitlines():
        found = _DECIDER_LINE.match(line)
        if found:
            figures[int(found.group(1))] = (float(found.group(2)), float(found.group(3)))
    return figures


def resolver_figures(output: str) -> dict[str, float]:
    """Cold calls and wall time; warm enrich p50/p99 for the small chat and large team."""
    figures: dict[str, float] = {}
    warm = 0
    for line in output.splitlines():
        if found := _COLD_CALLS.match(line):
            figures["cold_calls"] = float(found.group(1))
        elif found := _COLD_WALL.match(line):
            figures["cold_wall_ms"] = float(found.group(1))
        elif found := _WARM_HEAD.match(line):
            warm += 1
            figures[f"warm{warm}_participants"] = float(found.group(2))
        elif (found := _ENRICH.match(line)) and warm:
            figures[f"warm{warm}_p50_ms"] = float(found.group(1))
            figures[f"warm{warm}_p99_ms"] = float(found.group(2))
    return figures


def run(report: Report, decider_events: int, resolver_warm: int) -> None:
    """Run both component benchmarks and put their figures in the report."""
    code, output = _run(
        "services.decider.bench", ["--rules", "10,100,1000", "--events", str(decider_events)]
    )
    report.decider(output, decider_figures(output), code)
    code, output = _run("services.resolver.bench", ["--warm", str(resolver_warm)])
    report.resolver(output, resolver_figures(output), code)
