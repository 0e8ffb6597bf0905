"""The benchmark suite behind ``tfw bench``: every figure measured side by side in one
run, printed as it comes and summed up against the targets at the end.

Order of a run: the decider and resolver component benchmarks (items 4 and 5, in
their own processes while nothing else of ours runs); then the proxies (stock
``mitmdump``, the lean master, the firewall) on one fast upstream, warmed, and
measured in alternating rounds so that a noisy neighbour hurts all of them alike.
Items 1, 2, 3 and 7 measure the decision path with the archive paused (its records
wait in JetStream); item 6 then starts the audit service again, lets it catch up, and
measures it beside the proxy on the same cores, items 1 and 2 included.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS

from services.common.ops import spawn
from tfw.bench import components
from tfw.bench.bus import calibrate
from tfw.bench.firewall import Rig, metric_sum
from tfw.bench.loadgen import run_load
from tfw.bench.measure import (
    AuditLag,
    Beside,
    CatchUp,
    Window,
    added_latency,
    consumer_lag,
    keep_alive,
    measured,
    percentile,
    sample_lag,
    wait_drained,
)
from tfw.bench.procs import cpu_seconds
from tfw.bench.profile import Profile, profile_interceptor
from tfw.bench.report import Report
from tfw.bench.workload import CHAT_HOST, accounts_of, build_requests, sign_in
from tfw.stack import StackError

WARM_TIMEOUT_S = 20.0
AUDIT_CONSUMER = "audit"
ARCHIVE_PROCESSES = ("audit", "secantusdb")
# The CPU tables' titles: what ran in their windows.
PATH_ONE = "decision path, 1 interceptor, archive paused"
PATH_TWO = "decision path, 2 interceptors, archive paused"
WHOLE_BESIDE = "whole firewall, the archive beside the proxy"
# The records items 1 to 7 leave in the stream: tens of thousands in a full run.
BACKLOG_TIMEOUT_S = 300.0


@dataclass
class Sizes:
    """How long and how hard each part runs; ``quick`` and ``tiny`` shrink them."""

    seconds: float = 3.0  # one keep-alive window
    rounds: int = 6  # rounds of stock / lean / firewall, every other one mirrored
    latency_seconds: float = 2.0
    connect_seconds: float = 3.0
    connections: int = 16
    connect_clients: int = 8
    decider_events: int = 2000
    resolver_warm: int = 2000
    profile_seconds: float = 8.0
    bus_requests: int = 2000  # request-replies each way in the bus calibration

    @classmethod
    def named(cls, size: str) -> Sizes:
        if size == "quick":
            return cls(2.0, 1, 2.0, 2.0, decider_events=500, resolver_warm=300,
                       profile_seconds=4.0, bus_requests=1000)
        if size == "tiny":  # the smoke test: every figure, no meaning
            return cls(0.4, 1, 0.4, 0.4, connections=4, connect_clients=2,
                       decider_events=50, resolver_warm=20, profile_seconds=1.0,
                       bus_requests=50)
        return cls()


@dataclass
class Run:
    """One benchmark run: the rig, the sizes, and the figures gathered so far."""

    rig: Rig
    sizes: Sizes
    report: Report
    mix: str = "allowed"
    profile: bool = False
    requests: list[bytes] = field(default_factory=list)
    keep_alive: dict[str, list[Window]] = field(default_factory=dict)

    @property
    def ca(self) -> str:
        return str(self.rig.ca_file)

    def baseline_port(self, name: str) -> int:
        return self.rig.baselines[name][1]

    def baseline_pids(self, name: str) -> dict[str, int]:
        return {name: self.rig.baselines[name][0].pid,
                "upstream (stand-in)": self.rig.pids()["upstream (stand-in)"]}

    def port(self, name: str) -> int:
        """The proxy port of ``firewall`` (its first interceptor) or of a baseline."""
        return self.rig.proxy_port() if name == "firewall" else self.baseline_port(name)

    def pids(self, name: str) -> dict[str, int]:
        """The processes whose CPU a window of ``name`` is charged with."""
        return self.rig.pids() if name == "firewall" else self.baseline_pids(name)


async def _keep_alive_window(run: Run, name: str) -> Window:
    """One keep-alive window at the run's connection count through ``name``."""
    sizes = run.sizes
    return await measured(run.pids(name), keep_alive(
        [run.port(name)], CHAT_HOST, run.requests, run.ca, sizes.connections, sizes.seconds
    ))


async def run_suite(
    data_dir: Path, out: IO[str], log: IO[str], size: str = "full", mix: str = "allowed",
    profile: bool = False,
) -> Report:
    """Run every benchmark and return the report (printed to ``out`` as it goes);
    the services' logs go to ``log``."""
    sizes = Sizes.named(size)
    report = Report(out)
    report.header(size, mix)
    components.run(report, sizes.decider_events, sizes.resolver_warm)
    rig = Rig(data_dir, log)
    try:
        report.note("starting the upstream stand-in, stock mitmdump, the lean master and the "
                    "firewall stack …")
        rig.start_upstream()
        rig.start_baselines()
        rig.start_firewall()
        run = Run(rig, sizes, report, mix, profile)
        await _warm(run)
        trail = await _pause_archive(run)
        await _bus(run)
        await _throughput(run)
        await _latency(run)
        await _new_connections(run)
        await _scaling(run)
        if profile:
            await _profile(run)
        try:
            await _archive(run, trail)
        except (StackError, nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            # Items 1 to 5 and 7 stand; say what went wrong and keep them.
            report.problem(f"item 6 could not run to its end: {type(exc).__name__}: {exc}")
    finally:
        rig.stop()
    report.summary()
    return report


def in_round(names: tuple[str, ...], index: int) -> tuple[str, ...]:
    """The order of round ``index``: as given, then mirrored (A B C, C B A, A B C …), so
    a machine that slows down or speeds up during the run shifts neither side of a
    comparison more than the other."""
    return names if index % 2 == 0 else names[::-1]


# --- warming --------------------------------------------------------------------------


async def _warm(run: Run) -> None:
    """Sign the accounts in, then send the mix until the resolver answers from cache."""
    rig = run.rig
    tokens = await asyncio.to_thread(
        sign_in, rig.org, rig.proxy_port(), rig.ca_file, accounts_of(run.mix)
    )
    run.requests = build_requests(rig.org, run.mix, tokens)
    started = time.perf_counter()
    uncached = 1.0
    while time.perf_counter() - started < WARM_TIMEOUT_S:
        before = _resolver_contexts(rig)
        await run_load(rig.proxy_port(), CHAT_HOST, run.requests, run.ca, 2, 0.5, warmup=0)
        after = _resolver_contexts(rig)
        done = sum(after.values()) - sum(before.values())
        misses = done - (after["cache"] - before["cache"])
        uncached = misses / done if done else 1.0
        if done and uncached == 0:
            break
        await asyncio.sleep(0.2)
    run.report.note(
        f"warm: {time.perf_counter() - started:.1f} s until every send was enriched from "
        f"the cache (last round {uncached:.0%} not from cache)"
    )
    for name in ("stock", "lean"):  # let the baselines open their upstream connections
        await run_load(run.baseline_port(name), CHAT_HOST, run.requests, run.ca, 2, 0.3,
                       warmup=0)


def _resolver_contexts(rig: Rig) -> dict[str, float]:
    text = rig.metrics("resolver")
    return {
        source: metric_sum(text, "tfw_resolver_events_total", context=source)
        for source in ("cache", "lookup", "observed", "not_needed", "unresolved")
    }


# --- the decision path's own figures: the archive paused ----------------------------------


@dataclass
class Trail:
    """Where the decision stream and the decider's count stood when the archive paused."""

    stream_messages: int
    decided: float


async def _pause_archive(run: Run) -> Trail:
    """Stop the audit service for items 1, 2, 3 and 7, once it has archived the warm-up.

    Those items measure the decision path as the issue defines it: interceptor →
    resolver → decider → verdict, with every record published to JetStream and
    acknowledged before the verdict takes effect. The archive (the audit consumer and
    its database) is the part a deployment runs on nodes of its own; here its records
    wait in the stream, and item 6 archives them and then measures the archive beside
    the proxy on these same cores.
    """
    rig = run.rig
    nc = await rig.connect()
    try:
        stream = rig.subjects.decision_stream
        warm = AuditLag()
        await wait_drained(nc, stream, AUDIT_CONSUMER, warm)
        if warm.drained_after_s is None:
            run.report.problem("the warm-up's records were not all archived before the "
                               "pause: item 6's count of archived records includes them")
        rig.pause_archive()
        trail = Trail(
            (await nc.jetstream().stream_info(stream)).state.messages,
            _decisions(rig),
        )
    finally:
        await nc.close()
    run.report.note("the audit service is stopped for items 1, 2, 3 and 7 (the decision "
                    "path: every record published and acknowledged, waiting in the stream); "
                    "item 6 archives them and measures the archive beside the proxy")
    return trail


def _decisions(rig: Rig) -> float:
    return metric_sum(rig.metrics("decider"), "tfw_decider_decisions_total")


# --- item 1: keep-alive throughput ------------------------------------------------------


async def _throughput(run: Run) -> None:
    for index in range(run.sizes.rounds):
        for name in in_round(("stock", "lean", "firewall"), index):
            run.keep_alive.setdefault(name, []).append(await _keep_alive_window(run, name))
    run.report.throughput(run.keep_alive, run.sizes.connections, run.mix)
    run.report.cpu_table(run.keep_alive["firewall"], PATH_ONE)


# --- calibration: the bus alone ---------------------------------------------------------


async def _bus(run: Run) -> None:
    """One nats-py request-reply on the run's nats-server, to read item 2 against."""
    rig = run.rig
    assert rig.stack.nats_url
    try:
        found = await calibrate(rig.stack.nats_url, f"{rig.prefix}.bench.echo",
                                run.sizes.bus_requests)
    except (RuntimeError, nats.errors.Error) as exc:
        run.report.problem(f"the bus calibration could not run: {type(exc).__name__}: {exc}")
        return
    run.report.bus(found)


# --- item 2: latency added at one connection ------------------------------------------


async def _latency(run: Run) -> None:
    samples: dict[str, list[float]] = {"lean": [], "firewall": []}
    rounds = []  # each round's own added p50, shown beside the figure of all samples
    windows: dict[str, list[Window]] = {"lean": [], "firewall": []}
    for index in range(run.sizes.rounds):
        this_round: dict[str, list[float]] = {"lean": [], "firewall": []}
        for name, window in (await _one_connection_round(run, this_round, index)).items():
            windows[name].append(window)
        rounds.append(added_latency(this_round["lean"], this_round["firewall"])[0])
        for name, found in this_round.items():
            samples[name] += found
    added_p50, added_p99 = added_latency(samples["lean"], samples["firewall"])
    run.report.latency(
        {name: (statistics.median(s) if s else float("nan"), percentile(s, 0.99), len(s))
         for name, s in samples.items()},
        added_p50=added_p50,
        added_p99=added_p99,
        rounds_p50=rounds,
    )
    run.report.latency_cpu(windows["lean"], windows["firewall"], rounds)


async def _one_connection_round(
    run: Run, samples: dict[str, list[float]], index: int
) -> dict[str, Window]:
    """One latency window at one connection for the lean master and the firewall (in
    the order of round ``index``); their latencies are added to ``samples``, and the
    windows, with the CPU each process spent in them, are returned by name."""
    windows = {}
    for name in in_round(("lean", "firewall"), index):
        windows[name] = await measured(run.pids(name), run_load(
            run.port(name), CHAT_HOST, run.requests, run.ca, 1, run.sizes.latency_seconds,
            warmup=0,
        ))
        samples[name] += windows[name].result.latencies_ms
    return windows


# --- item 3: new TLS connections ------------------------------------------------------


async def _new_connections(run: Run) -> None:
    sizes = run.sizes
    found: dict[str, list[Window]] = {"stock": [], "firewall": []}
    for index in range(sizes.rounds):
        for name in in_round(tuple(found), index):
            found[name].append(await measured(run.pids(name), run_load(
                run.port(name), CHAT_HOST, run.requests, run.ca, sizes.connect_clients,
                sizes.connect_seconds, keep_alive=False, warmup=0,
            )))
    run.report.new_connections(found, sizes.connect_clients)


# --- item 7: one and two interceptors -------------------------------------------------


async def _scaling(run: Run) -> None:
    """One interceptor, then two, in mirrored rounds. The second interceptor stays up
    throughout; in the one-interceptor windows it takes no connections."""
    sizes, rig = run.sizes, run.rig
    found: dict[str, list[Window]] = {"one": [], "two": []}
    rig.add_interceptor()
    try:
        ports = [rig.proxy_port(0), rig.proxy_port(1)]
        await keep_alive(ports, CHAT_HOST, run.requests, run.ca, 4, 0.5)  # warm the second
        for index in range(sizes.rounds):
            for name in in_round(("one", "two"), index):
                used = ports[:1] if name == "one" else ports
                found[name].append(await measured(rig.pids(), keep_alive(
                    used, CHAT_HOST, run.requests, run.ca, sizes.connections, sizes.seconds
                )))
    finally:
        rig.remove_interceptor()
    run.report.scaling(found["one"], found["two"])
    run.report.cpu_table(found["two"], PATH_TWO)


# --- the warm-path profile ----------------------------------------------------------------


async def _profile(run: Run) -> None:
    rig, sizes = run.rig, run.sizes
    pid = rig.stack.find("interceptor").popen.pid
    out = rig.data_dir / "interceptor-profile.txt"
    load = keep_alive([rig.proxy_port()], CHAT_HOST, run.requests, run.ca,
                      sizes.connections, sizes.profile_seconds + 1.0)
    result: Profile | str
    result, _ = await asyncio.gather(
        asyncio.to_thread(profile_interceptor, pid, sizes.profile_seconds, out), load
    )
    run.report.profile(result)


# --- item 6: the archive, catching up and then beside the proxy ---------------------------


async def _archive(run: Run, trail: Trail) -> None:
    """Item 6. The audit service starts again and archives what items 1 to 7 left in the
    stream (its rate with the proxy idle is the archive's capacity on this machine);
    then items 1 and 2 run once more with the archive working beside the proxy on the
    same cores, sampling the consumer's lag. Every decision made since the pause must
    then be in the stream and in the archive."""
    rig = run.rig
    stream = rig.subjects.decision_stream
    nc = await rig.connect()
    beside = Beside()
    try:
        catch_up = await _catch_up(run, nc)
        if catch_up.seconds is None:
            run.report.problem(
                f"item 6: the backlog was not archived within {BACKLOG_TIMEOUT_S:.0f} s; "
                "the rounds beside the proxy were not run (they would measure the catch-up)"
            )
        else:
            await _beside_rounds(run, nc, beside)
        final = AuditLag()
        await wait_drained(nc, stream, AUDIT_CONSUMER, final)
        published = (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()
    run.report.archive(
        connections=run.sizes.connections,
        catch_up=catch_up,
        beside=beside,
        decided=_decisions(rig) - trail.decided,
        published=published - trail.stream_messages,
        archived=_archived(rig),
        waiting=None if final.drained_after_s is not None
        else final.error or "the consumer had not caught up",
    )
    if beside.firewall:
        run.report.cpu_table(beside.firewall, WHOLE_BESIDE)


async def _catch_up(run: Run, nc: NATS) -> CatchUp:
    """Start the audit again and time it through the backlog, with the CPU the audit and
    its database spent meanwhile."""
    rig = run.rig
    stream = rig.subjects.decision_stream
    backlog = await consumer_lag(nc, stream, AUDIT_CONSUMER)
    await asyncio.to_thread(rig.resume_archive)
    # Ready means the audit has fetched once: count what it stores from here on.
    archive = {name: pid for name, pid in rig.pids().items() if name in ARCHIVE_PROCESSES}
    before = {name: cpu_seconds(pid) for name, pid in archive.items()}
    stored = _archived(rig)
    lag = AuditLag()
    started = time.perf_counter()
    await wait_drained(nc, stream, AUDIT_CONSUMER, lag, BACKLOG_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    return CatchUp(
        backlog=backlog,
        records=_archived(rig) - stored,
        seconds=lag.drained_after_s,
        cores={name: (cpu_seconds(pid) - before[name]) / elapsed
               for name, pid in archive.items()},
    )


async def _beside_rounds(run: Run, nc: NATS, beside: Beside) -> None:
    """Items 1 and 2 again, the archive working: stock and firewall keep-alive windows
    (the consumer's lag sampled, its catch-up timed after each), then one connection."""
    sizes, rig = run.sizes, run.rig
    stream = rig.subjects.decision_stream
    for index in range(sizes.rounds):
        for name in in_round(("stock", "firewall"), index):
            if name == "stock":
                beside.stock.append(await _keep_alive_window(run, name))
                continue
            stored = _archived(rig)
            stop = asyncio.Event()
            sampler = spawn(
                sample_lag(nc, stream, AUDIT_CONSUMER, beside.lag, stop), "bench-audit-lag"
            )
            try:
                window = await _keep_alive_window(run, name)
            finally:
                stop.set()
                await sampler
            beside.firewall.append(window)
            beside.archived += _archived(rig) - stored
            after = AuditLag()
            await wait_drained(nc, stream, AUDIT_CONSUMER, after)
            beside.caught_up_s.append(after.drained_after_s)
        await _one_connection_round(run, beside.latencies, index)


def _archived(rig: Rig) -> float:
    """Records the running audit process has stored since it started."""
    return metric_sum(rig.metrics("audit"), "tfw_audit_records_total", outcome="stored")
