"""SIGKILL each service in turn while requests are in flight (real nats-server,
SecantusDB, mitmproxy): every request ends forwarded with a verdict or blocked with a
reason within the timeout, none hangs, nothing blocked reaches Teams, and once the
service is back every decision made is archived exactly once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.reliability.harness import (
    Firewall,
    assert_every_request_ended,
    running_firewall,
)
from tfw.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IN_FLIGHT = 24


@pytest.fixture(scope="module")
def firewall(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    with running_firewall(infra, tmp_path_factory, "kill") as firewall:
        yield firewall


def _kill(firewall: Firewall, service: str) -> None:
    process = firewall.stack.find(service)
    os.kill(process.popen.pid, signal.SIGKILL)
    process.popen.wait(10)
    firewall.stack.stop_process(process)  # forgets the dead process


@pytest.mark.parametrize("service", ["resolver", "decider", "audit", "interceptor"])
def test_a_killed_service_loses_no_request_and_no_record(firewall: Firewall, service: str) -> None:
    firewall.wait_until_allowed()
    outcomes = firewall.load(IN_FLIGHT, during=lambda: _kill(firewall, service))
    assert_every_request_ended(outcomes, proxy_alive=service != "interceptor")
    assert not [r for r in firewall.upstream.received if r.method == "PUT"], (
        "an edit from abroad reached Teams"
    )

    started = time.monotonic()
    firewall.start(service)
    recovery_s = firewall.wait_until_allowed()
    after = firewall.load(6)
    assert all(outcome.decided for outcome in after), after

    decided = [o.decision_id for o in outcomes + after if o.decided and o.decision_id]
    counts = firewall.wait_archived(decided)
    missing = [decision for decision in decided if decision not in counts]
    assert missing == [], f"decisions never archived: {missing}"
    assert [d for d, n in counts.items() if n != 1] == [], "a decision archived twice"
    deadline = time.monotonic() + 20
    while len(counts) < firewall.stream_messages() and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = firewall.wait_archived([], timeout=0)
    assert len(counts) == firewall.stream_messages(), "a recorded decision was not archived"

    kinds = {
        "forwarded": sum(o.forwarded for o in outcomes),
        "blocked by rule": sum(o.decided and not o.forwarded for o in outcomes),
        "failed closed": sum(o.failed_closed for o in outcomes),
        "connection error": sum(o.error is not None for o in outcomes),
    }
    print(
        f"\nSIGKILL {service}: {IN_FLIGHT} requests in flight -> {kinds}; slowest "
        f"{max(o.elapsed_s for o in outcomes):.2f}s; back and forwarding "
        f"{time.monotonic() - started:.1f}s after restart began "
        f"(first forward {recovery_s:.2f}s after ready); {len(counts)} records, each once"
    )
