"""How rounds are ordered and compared: a machine that drifts during a run must not
favour either side of a ratio."""

from __future__ import annotations

import math

from tfw.bench.loadgen import LoadResult
from tfw.bench.measure import Window
from tfw.bench.report import paired_ratio
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
