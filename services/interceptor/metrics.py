"""The interceptor's Prometheus metrics, served on ``/metrics`` by the health server."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "tfw_interceptor_requests_total",
    "HTTP requests seen, by what the interceptor did with them (decided, passed, read, refused)",
    ["scope"],
)
UNKNOWN_HOSTS = Counter(
    "tfw_interceptor_unknown_teams_host_requests_total",
    "Requests to Teams hosts the scope does not know (logged once per host)",
)
CONNECTIONS = Counter(
    "tfw_interceptor_tls_connections_total",
    "Client TLS connections, by treatment (decrypted, tunnelled)",
    ["treatment"],
)
TLS_CLIENT_FAILURES = Counter(
    "tfw_interceptor_tls_client_failures_total",
    "TLS handshakes a client broke off (usually: it does not trust the proxy CA)",
)
VERDICTS = Counter("tfw_interceptor_verdicts_total", "Verdicts applied", ["decision"])
FAILURES = Counter(
    "tfw_interceptor_failures_total",
    "Requests that ended in the fail mode, by cause and mode",
    ["cause", "mode"],
)
OBSERVATIONS = Counter(
    "tfw_interceptor_observations_total",
    "Observations, by kind and outcome (published, dropped, too_large, error)",
    ["kind", "outcome"],
)
LATENCY = Histogram(
    "tfw_interceptor_decision_seconds",
    "Time from a controlled request to its verdict",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 2, 5),
)
RECORD_WAIT = Histogram(
    "tfw_interceptor_record_wait_seconds",
    "Time a verdict waited for its record's acknowledgement after it arrived (0: the "
    "acknowledgement came first)",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.5, 5),
)

# The label values the hot path uses, bound once (a ``labels()`` lookup per request
# showed in the interceptor's profile); they also appear at 0 from the start.
REQUESTS_DECIDED = REQUESTS.labels("decided")
REQUESTS_READ = REQUESTS.labels("read")
REQUESTS_PASSED = REQUESTS.labels("passed")
REQUESTS_REFUSED = REQUESTS.labels("refused")
CONNECTIONS_DECRYPTED = CONNECTIONS.labels("decrypted")
CONNECTIONS_TUNNELLED = CONNECTIONS.labels("tunnelled")
VERDICTS_ALLOW = VERDICTS.labels("allow")
VERDICTS_BLOCK = VERDICTS.labels("block")
