"""Reading the figures out of the decider's and resolver's own benchmark output."""

from __future__ import annotations

from tfw.bench.components import decider_figures, resolver_figures

# ruff: noqa: E501 (benchmark output, quoted as printed)

DECIDER = """decide() incl. verdict and record, 2000 events, CPU time, 5 rounds
   10 rules: median   17.6 µs/decision (best 15.3, worst 30.9; rule matching alone 2.5); compile 41 ms; 0/50 blocked
  100 rules: median   41.6 µs/decision (best 33.7, worst 56.6); compile 278 ms; 3/50 blocked
 1000 rules: median  245.8 µs/decision (best 228.7, worst 268.6); compile 4161 ms; 6/50 blocked
"""

RESOLVER = """organisation: /work/shared/cases/org.yaml
store: in-process only
cold resolve of team-all-hands (1203 participants, context lookup):
    calls 17: chatsvc.members 13, chatsvc.thread 1, mt.fetchFederated 1, mt.fetchShortProfile 2
    wall time 266 ms
warm, grp-lookalike (2 participants):
    enrich          p50 0.075 ms  p99 0.302 ms  (n=20)
    encode for bus  p50 0.012 ms  p99 0.094 ms  (n=20)
warm, team-all-hands (1203 participants):
    enrich          p50 0.286 ms  p99 9.225 ms  (n=50)
    encode for bus  p50 1.480 ms  p99 13.776 ms  (n=50)
calls made while warm: 0
"""


def test_decider_figures_are_microseconds_by_rule_count() -> None:
    assert decider_figures(DECIDER) == {10: 17.6, 100: 41.6, 1000: 245.8}


def test_resolver_figures_name_cold_calls_and_both_warm_conversations() -> None:
    assert resolver_figures(RESOLVER) == {
        "cold_calls": 17.0,
        "cold_wall_ms": 266.0,
        "warm1_participants": 2.0,
        "warm1_p50_ms": 0.075,
        "warm1_p99_ms": 0.302,
        "warm2_participants": 1203.0,
        "warm2_p50_ms": 0.286,
        "warm2_p99_ms": 9.225,
    }


def test_output_without_figures_gives_none() -> None:
    assert decider_figures("Traceback (most recent call last):\n  boom") == {}
    assert resolver_figures("") == {}
