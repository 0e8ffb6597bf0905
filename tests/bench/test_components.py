"""Reading the figures out of the decider's and resolver's own benchmark output."""

from __future__ import annotations

from tfw.bench.components import decider_figures, resolver_figures

# ruff: noqa: E501 (benchmark output, quoted as printed)

DECIDER = """CPU µs per event, 5 rounds of 2000 new events in 300 conversations: the verdict (rule matching and the verdict built), and the whole decision (verdict and its audit record)
   10 rules: verdict median    8.8 µs (best 8.1, worst 9.9; rule matching 6.0); with the record 17.2 µs; compile 10 ms; 24/2000 blocked
  100 rules: verdict median   18.1 µs (best 17.5, worst 19.9; rule matching 16.7); with the record 26.4 µs; compile 233 ms; 161/2000 blocked
 1000 rules: verdict median   83.4 µs (best 75.6, worst 137.3; rule matching 57.3); with the record 105.8 µs; compile 357 ms; 345/2000 blocked
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


def test_decider_figures_are_verdict_and_whole_decision_microseconds_by_rule_count() -> None:
    assert decider_figures(DECIDER) == {
        10: (8.8, 17.2),
        100: (18.1, 26.4),
        1000: (83.4, 105.8),
    }


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
