"""Reading the services' Prometheus metrics, and the map_remote specs of the rig."""

from __future__ import annotations

import re

from tfw.bench.firewall import chat_service_to, metric_sum, rest_to_simulator

METRICS = """\
# HELP tfw_resolver_events_total Requests enriched
# TYPE tfw_resolver_events_total counter
tfw_resolver_events_total{action="message.send",context="cache"} 120.0
tfw_resolver_events_total{action="reaction.add",context="cache"} 3.0
tfw_resolver_events_total{action="message.send",context="lookup"} 2.0
tfw_audit_records_total{outcome="stored"} 7.0
tfw_audit_records_total_created{outcome="stored"} 1.7e9
"""


def test_a_metric_is_summed_over_the_samples_whose_labels_match() -> None:
    assert metric_sum(METRICS, "tfw_resolver_events_total", context="cache") == 123.0
    assert metric_sum(METRICS, "tfw_resolver_events_total") == 125.0
    assert metric_sum(METRICS, "tfw_audit_records_total", outcome="stored") == 7.0
    assert metric_sum(METRICS, "tfw_missing_total") == 0.0


def test_sends_go_to_the_fast_upstream_and_the_rest_to_the_simulator() -> None:
    _, pattern, target = chat_service_to(4711).split("|")
    assert re.sub(pattern, target, "https://emea.ng.msg.teams.microsoft.com/v1/x") == (
        "http://127.0.0.1:4711/v1/x"
    )
    assert not re.match(pattern, "https://teams.microsoft.com/api/authsvc/v1.0/authz")
    _, pattern, target = rest_to_simulator("http://127.0.0.1:9").split("|")
    assert re.sub(pattern, target, "https://teams.microsoft.com/api/mt/x") == (
        "http://127.0.0.1:9/_host/teams.microsoft.com/api/mt/x"
    )
