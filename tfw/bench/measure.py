"""One measured window: a load run, the CPU each process spent during it, and what
the audit trail did meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS

from tfw.bench.loadgen import LoadResult, run_load
from tfw.bench.procs import TICKS, cpu_seconds

HARNESS = "load generator (bench)"


@dataclass
class Window:
    """A load run and the CPU seconds each named process spent in it."""

    result: LoadResult
    cpu: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0  # CPU seconds the whole machine spent, every process
    machine_seconds: float = 0.0  # CPU seconds the machine had (cores × wall time)

    @property
    def others_cores(self) -> float:
        """Cores, on average, that processes outside this run kept busy meanwhile."""
        ours = sum(self.cpu.values())
        seconds = self.result.seconds or 1.0
        return max(0.0, (self.machine_busy - ours) / seconds)

    def cpu_ms_per_request(self) -> dict[str, float]:
        """Milliseconds of CPU per completed request, by process."""
        done = max(self.result.requests, 1)
        return {name: seconds * 1000 / done for name, seconds in self.cpu.items()}


async def measured(pids: dict[str, int], load: Awaitable[LoadResult]) -> Window:
    """Run ``load`` and read every process's CPU before and after it."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = time.process_time()
    busy, total = machine_cpu()
    result = await load
    busy_after, total_after = machine_cpu()
    window = Window(result, machine_busy=busy_after - busy, machine_seconds=total_after - total)
    window.cpu = {name: max(0.0, cpu_seconds(pid) - before[name]) for name, pid in pids.items()}
    window.cpu[HARNESS] = time.process_time() - own
    return window


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / TICKS, total / TICKS


async def keep_alive(
    ports: list[int], host: str, requests: list[bytes], ca_file: str, connections: int,
    seconds: float,
) -> LoadResult:
    """``connections`` keep-alive clients spread over the proxies on ``ports``, one
    result for all of them."""
    share = [connections // len(ports) + (i < connections % len(ports)) for i in range(len(ports))]
    runs = await asyncio.gather(
        *(
            run_load(port, host, requests, ca_file, count, seconds, keep_alive=True, warmup=0)
            for port, count in zip(ports, share, strict=True)
            if count
        )
    )
    merged = LoadResult(seconds=max(run.seconds for run in runs))
    for run in runs:
        merged.requests += run.requests
        merged.errors += run.errors
        merged.latencies_ms += run.latencies_ms
        merged.connections_opened += run.connections_opened
        for status, count in run.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + count
    return merged


@dataclass
class AuditLag:
    """Consumer lag of the audit's durable consumer, sampled during a load run."""

    samples: list[int] = field(default_factory=list)
    drained_after_s: float | None = None
    error: str | None = None

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else 0.0


@dataclass
class CatchUp:
    """Item 6's first part: the audit archiving the backlog with the proxy idle."""

    backlog: int  # records waiting when the audit started again
    records: int | float  # records it stored from when it was ready until caught up
    seconds: float | None  # until caught up; None: not within the wait
    cores: dict[str, float] = field(default_factory=dict)  # by process, meanwhile

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else float("nan")


@dataclass
class Beside:
    """Item 6's windows with the archive working: stock and firewall keep-alive rounds,
    one-connection latencies, the consumer's lag, records archived in the windows."""

    stock: list[Window] = field(default_factory=list)
    firewall: list[Window] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"lean": [], "firewall": []}
    )
    lag: AuditLag = field(default_factory=AuditLag)
    archived: float = 0.0
    # Per keep-alive window: seconds until the consumer caught up once it ended
    # (None: not within the wait).
    caught_up_s: list[float | None] = field(default_factory=list)

    @property
    def slowest_catch_up(self) -> float | None:
        """The longest catch-up after a window; None if any window's never came."""
        if not self.caught_up_s or None in self.caught_up_s:
            return None
        return max(s for s in self.caught_up_s if s is not None)


async def consumer_lag(nc: NATS, stream: str, consumer: str) -> int:
    """Records the consumer has not acknowledged yet (waiting plus in flight)."""
    info = await asyncio.wait_for(nc.jetstream().consumer_info(stream, consumer), 2.0)
    return int((info.num_pending or 0) + (info.num_ack_pending or 0))


async def sample_lag(
    nc: NATS, stream: str, consumer: str, lag: AuditLag, stop: asyncio.Event,
    every_s: float = 0.25,
) -> None:
    """Sample the lag until ``stop`` is set."""
    while not stop.is_set():
        try:
            lag.samples.append(await consumer_lag(nc, stream, consumer))
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            lag.error = type(exc).__name__
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def wait_drained(
    nc: NATS, stream: str, consumer: str, lag: AuditLag, timeout_s: float = 30.0
) -> None:
    """Time until the audit consumer has caught up after the load stopped."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        try:
            if await consumer_lag(nc, stream, consumer) == 0:
                lag.drained_after_s = time.perf_counter() - started
                return
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            lag.error = type(exc).__name__
        await asyncio.sleep(0.1)


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile (NaN when there are no samples)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def added_latency(baseline: list[float], measured: list[float]) -> tuple[float, float]:
    """What ``measured`` adds to ``baseline`` at the median and the 99th percentile, in
    the samples' unit (NaN where either has no samples)."""
    if not baseline or not measured:
        return float("nan"), float("nan")
    p50 = statistics.median(measured) - statistics.median(baseline)
    return p50, percentile(measured, 0.99) - percentile(baseline, 0.99)
