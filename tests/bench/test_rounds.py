"""How rounds are ordered and compared (a machine that drifts during a run must not
favour either side of a ratio), and what makes a run fail."""

from __future__ import annotations

import io
import math

import pytest

from tfw.bench.loadgen import LoadResult
from tfw.bench.measure import Beside, CatchUp, Window
from tfw.bench.report import Report, paired_ratio
from tfw.bench.suite import in_round


def _window(rate: float) -> Window:
    return Window(LoadResult(requests=int(rate * 10), seconds=10.0))


def test_every_other_round_runs_in_the_mirrored_order() -> None:
    names = ("stock", "lean", "firewall")
    assert in_round(names, 0) == names
    assert in_round(names, 1) == ("firewall", "lean", "stock")
    assert in_round(names, 2) == names


def test_the_ratio_is_the_median_of_each_rounds_own_ratio() -> None:
    # The machine's speed changes between rounds. Each round's own ratios are 1.3, 1.2
    # and 1.0; the two sides' medians (600 and 600) would give 1.0, comparing the
    # firewall's third round with the stock proxy's first.
    stock = [_window(700), _window(400), _window(600)]
    firewall = [_window(910), _window(480), _window(600)]
    ratio, rounds = paired_ratio(firewall, stock)
    assert [round(r, 2) for r in rounds] == [1.3, 1.2, 1.0]
    assert round(ratio, 2) == 1.2


def test_a_round_whose_baseline_did_nothing_is_left_out() -> None:
    ratio, rounds = paired_ratio([_window(100), _window(200)], [_window(0), _window(100)])
    assert rounds == [2.0]
    assert ratio == 2.0
    assert math.isnan(paired_ratio([_window(1)], [_window(0)])[0])


def test_a_trail_with_a_missing_record_is_a_problem_of_the_run() -> None:
    report = Report(io.StringIO())
    report.archive(
        connections=16,
        catch_up=CatchUp(backlog=100, records=100, seconds=0.5, cores={"audit": 0.2}),
        beside=Beside(),
        decided=1000, published=1000, archived=999, waiting=None,
    )
    assert report.problems and "archived 999" in report.problems[0]
    report.summary()
    assert "Problems (the run exits 1)" in report.out.getvalue()  # type: ignore[attr-defined]


def test_a_whole_trail_is_no_problem_and_a_backlog_never_drained_has_no_rate() -> None:
    report = Report(io.StringIO())
    report.archive(
        connections=16,
        catch_up=CatchUp(backlog=100, records=40, seconds=None),
        beside=Beside(),
        decided=10, published=10, archived=10, waiting=None,
    )
    assert report.problems == []
    assert "not within the wait" in report.out.getvalue()  # type: ignore[attr-defined]
    assert math.isnan(report.figures["audit"]["backlog_records_per_s"])


def test_the_slowest_catch_up_is_unknown_when_any_window_never_caught_up() -> None:
    assert Beside(caught_up_s=[0.1, 0.4]).slowest_catch_up == 0.4
    assert Beside(caught_up_s=[0.1, None]).slowest_catch_up is None
    assert Beside().slowest_catch_up is None


def test_the_targets_say_how_fast_the_machine_was_against_the_issues_reference() -> None:
    report = Report(io.StringIO())
    report.figures["cpu_projection"] = {"stock_ms": 2.8}
    report.summary()
    shown = report.out.getvalue()  # type: ignore[attr-defined]
    assert "stock mitmdump needed 2.80 ms of CPU per request, 2.0× the issue's reference" in shown
    assert report.figures["machine"]["slower_than_reference"] == pytest.approx(2.0)


def test_the_targets_say_how_fast_the_bus_was_against_the_issues_reference() -> None:
    report = Report(io.StringIO())
    report.figures["bus"] = {"p50_ms": 0.6, "paced_p50_ms": 0.9}
    report.summary()
    shown = report.out.getvalue()  # type: ignore[attr-defined]
    assert "one nats-py request-reply took 0.60 ms p50, 1.5× the reference's 0.4 ms" in shown
    assert "(paced 1 ms apart: 0.90 ms)" in shown
    assert report.figures["machine"]["request_reply_ms"] == 0.6
