"""A bounded soak at about half of the measured capacity: every request decided,
memory and file descriptors of every service flat (figures printed). Real
nats-server, SecantusDB and mitmproxy; the load comes from this machine too."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import Firewall, Outcome, running_firewall
from tfw.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("interceptor", "resolver", "decider", "audit")
CLIENTS = 4
PROBE_S = 2.0
SOAK_S = 16.0
SAMPLE_EVERY_S = 2.0
# Flat: after warm-up, a service may settle a little but not keep growing.
MAX_RSS_GROWTH_MIB = 32.0
MAX_FD_GROWTH = 16


@pytest.fixture(scope="module")
def firewall(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    with running_firewall(infra, tmp_path_factory, "soak") as firewall:
        yield firewall


def _usage(pid: int) -> tuple[float, int]:
    """Resident memory in MiB and open file descriptors of one process."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    rss_kib = int(rss.split()[1])
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def _drive(firewall: Firewall, seconds: float, rate: float | None) -> list[Outcome]:
    """Requests from CLIENTS keep-alive clients for ``seconds``; ``rate`` (per second,
    all clients together) paces them, None sends as fast as they can."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        interval = CLIENTS / rate if rate else 0.0
        next_at = time.monotonic() + index * interval / CLIENTS
        with firewall.client() as client:
            number = 0
            while time.monotonic() < stop_at:
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_at += interval
                kind = "edit" if number % 4 == 3 else "send"
                outcome = firewall.request(kind, client=client)
                number += 1
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return outcomes


def test_half_capacity_soak_keeps_memory_and_descriptors_flat(firewall: Firewall) -> None:
    firewall.wait_until_allowed()
    probe = _drive(firewall, PROBE_S, None)
    capacity = len(probe) / PROBE_S
    rate = capacity / 2

    pids = {name: firewall.stack.find(name).popen.pid for name in SERVICES}
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in SERVICES}
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(SAMPLE_EVERY_S):
            for name, pid in pids.items():
                samples[name].append(_usage(pid))

    thread = threading.Thread(target=sampler)
    thread.start()
    try:
        outcomes = _drive(firewall, SOAK_S, rate)
    finally:
        done.set()
        thread.join(10)

    undecided = [o for o in outcomes if not o.decided]
    assert undecided == [], undecided[:5]
    decided = [o.decision_id for o in probe + outcomes if o.decision_id]
    counts = firewall.wait_archived(decided, timeout=60)
    assert [d for d in decided if counts.get(d) != 1] == []

    lines = [
        f"\nsoak: capacity probe {capacity:.0f} req/s with {CLIENTS} keep-alive clients; "
        f"{len(outcomes)} requests at {len(outcomes) / SOAK_S:.0f} req/s for {SOAK_S:.0f}s, "
        f"all decided and archived once; p99 latency "
        f"{sorted(o.elapsed_s for o in outcomes)[int(len(outcomes) * 0.99)] * 1000:.1f} ms"
    ]
    for name, series in samples.items():
        assert len(series) >= 4
        warm = series[len(series) // 4]
        last = series[-1]
        peak = max(rss for rss, _ in series)
        lines.append(
            f"  {name:<11} RSS {series[0][0]:6.1f} -> {warm[0]:6.1f} (after warm-up) -> "
            f"{last[0]:6.1f} MiB (peak {peak:.1f}); fds {series[0][1]} -> {warm[1]} -> {last[1]}"
        )
        assert last[0] - warm[0] < MAX_RSS_GROWTH_MIB, f"{name} memory keeps growing: {series}"
        assert last[1] - warm[1] < MAX_FD_GROWTH, f"{name} descriptors keep growing: {series}"
    print("\n".join(lines))
