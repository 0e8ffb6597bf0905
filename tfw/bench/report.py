"""Printing the figures of a run, and the targets they are held to.

Each section is printed when its measurement ends, so a long run shows progress;
:meth:`Report.summary` then lists every target as met or not met. ``figures`` keeps
the numbers for ``--json``.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from tfw.bench.measure import added_latency
from tfw.bench.workload import expected_verdicts

if TYPE_CHECKING:
    from tfw.bench.bus import Calibration
    from tfw.bench.measure import Beside, CatchUp, Window
    from tfw.bench.profile import Profile

TOP = 12
# CPU per request of stock mitmdump at 16 keep-alive connections on the machine the
# issue's targets were set on (its own figure): what the machine's speed is read against.
REFERENCE_STOCK_MS = 1.4
# One nats-py request-reply there, p50, and its client CPU (the figures too).
REFERENCE_REQUEST_REPLY_MS = 0.4
REFERENCE_CLIENT_CPU_US = 30.0


@dataclass
class Target:
    item: str
    measured: float
    target: str
    met: bool
    unit: str


@dataclass
class Report:
    out: IO[str]
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    aside: list[str] = field(default_factory=list)  # figures shown beside the targets
    problems: list[str] = field(default_factory=list)  # what went wrong: the run fails

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.line(f"  · {text}")

    def section(self, title: str) -> None:
        self.line()
        self.line(title)
        self.line("-" * len(title))

    def target(self, item: str, measured: float, target: str, met: bool, unit: str) -> None:
        self.targets.append(Target(item, measured, target, met, unit))

    def problem(self, text: str) -> None:
        """Something the run could not measure or check: printed now and in the summary,
        and ``tfw bench`` exits 1."""
        self.problems.append(text)
        self.line(f"  ! {text}")

    # --- sections ---------------------------------------------------------------------

    def header(self, size: str, mix: str) -> None:
        load = os.getloadavg()[0]
        self.figures.update(size=size, mix=mix, cpus=os.cpu_count(), load_before=load)
        self.line(f"TeamsFirewall benchmark ({size} run, {mix} mix) on {os.cpu_count()} CPUs, "
                  f"load average {load:.2f} before the run")
        self.line("Every figure is measured in this run; ratios compare configurations "
                  "measured the same way, one after the other, in alternating rounds.")

    def decider(self, output: str, figures: dict[int, tuple[float, float]], code: int) -> None:
        self.section("4. Decider alone: CPU µs per verdict, and with its audit record")
        self._quote(output, code)
        self.figures["decider_us"] = {n: verdict for n, (verdict, _) in figures.items()}
        self.figures["decider_with_record_us"] = {n: whole for n, (_, whole) in figures.items()}
        for count, (verdict, whole) in sorted(figures.items()):
            self.line(f"  {count:>5} rules: {verdict:7.1f} µs per verdict, "
                      f"{whole:7.1f} µs with the record")
        if 100 in figures:
            verdict = figures[100][0]
            self.target("4. decider verdict at 100 rules", verdict, "≤ 20 µs",
                        verdict <= 20, "µs")

    def resolver(self, output: str, figures: dict[str, float], code: int) -> None:
        self.section("5. Resolver: warm-cache enrich, cold resolve of the largest team")
        self._quote(output, code)
        self.figures["resolver"] = figures
        if "cold_calls" in figures:
            self.line(f"  cold resolve: {figures['cold_calls']:.0f} calls to Teams, "
                      f"{figures.get('cold_wall_ms', math.nan):.0f} ms wall time")
        for n in (1, 2):
            if f"warm{n}_p50_ms" in figures:
                self.line(
                    f"  warm enrich, {figures[f'warm{n}_participants']:.0f} participants: "
                    f"p50 {figures[f'warm{n}_p50_ms']:.3f} ms, "
                    f"p99 {figures[f'warm{n}_p99_ms']:.3f} ms")

    def throughput(self, windows: dict[str, list[Window]], connections: int, mix: str) -> None:
        self.section(f"1. End to end, HTTPS keep-alive, {connections} connections, warm cache "
                     f"({mix} sends)")
        rates = {name: [w.result.rate for w in found] for name, found in windows.items()}
        median = {name: statistics.median(r) for name, r in rates.items()}
        for name, label in (("stock", "stock mitmdump, no addon"),
                            ("lean", "lean master, no firewall addon"),
                            ("firewall", "firewall: interceptor → resolver → decider → "
                                         "verdict, record published")):
            found = windows[name]
            statuses = _statuses(found)
            errors = sum(w.result.errors for w in found)
            each = ", ".join(f"{r:.0f}" for r in rates[name])
            self.line(f"  {label:<68} {median[name]:7.0f} req/s  (rounds: {each}; "
                      f"statuses {statuses}; errors {errors})")
        blocked = sum(w.result.statuses.get(403, 0) for w in windows["firewall"])
        done = sum(w.result.requests for w in windows["firewall"])
        self.line(f"  firewall verdicts: {done - blocked} allowed, {blocked} blocked "
                  f"({blocked / done if done else 0:.0%}; the {mix} mix blocks "
                  f"{expected_block_share(mix):.0%} of its sends)")
        ratio, paired = paired_ratio(windows["firewall"], windows["stock"])
        if len(paired) < len(windows["firewall"]):
            self.problem(f"item 1: {len(windows['firewall']) - len(paired)} round(s) left out "
                         "of the ratio: stock mitmdump completed no request in them")
        lean, _ = paired_ratio(windows["lean"], windows["stock"])
        over_lean, _ = paired_ratio(windows["firewall"], windows["lean"])
        self.line(f"  ratio firewall / stock mitmdump: {ratio:.2f}×, the median of the rounds' "
                  f"own ratios ({', '.join(f'{r:.2f}' for r in paired)})")
        self.line(f"  (lean master / stock: {lean:.2f}×; firewall / lean: {over_lean:.2f}×)")
        others = statistics.median(w.others_cores for found in windows.values() for w in found)
        self.line(f"  other work on the machine during these windows: {others:.2f} cores busy "
                  "on average")
        self.figures["throughput_rps"] = median
        self.figures["throughput_ratio"] = ratio
        self.figures["throughput_ratio_rounds"] = paired
        self.figures["others_cores"] = others
        self.target("1. decision path / stock mitmdump throughput", ratio, "≥ 1.2×",
                    ratio >= 1.2, "×")
        self._projection(windows)

    def _projection(self, windows: dict[str, list[Window]]) -> None:
        """Throughput as CPU alone would allow it, from CPU per request: what an idle
        machine of this many cores gives, with the client elsewhere."""
        def cpu(name: str, process: str) -> float:
            return statistics.median(w.cpu_ms_per_request().get(process, math.nan)
                                     for w in windows[name])

        stock, lean, interceptor = cpu("stock", "stock"), cpu("lean", "lean"), \
            cpu("firewall", "interceptor")
        total = statistics.median(_path_ms(w) for w in windows["firewall"])
        cores = os.cpu_count() or 1
        stock_rate = 1000 / stock
        one = min(1000 / interceptor, cores * 1000 / total)
        self.line(f"  proxy CPU per request: stock mitmdump {stock:.2f} ms, lean master "
                  f"{lean:.2f} ms, interceptor {interceptor:.2f} ms; the decision path's "
                  f"processes {total:.2f} ms (the archive's: item 6)")
        self.line(f"  CPU-bound projection on {cores} idle cores, client elsewhere: stock "
                  f"{stock_rate:.0f} req/s, firewall with 1 interceptor {one:.0f} req/s "
                  f"({one / stock_rate:.2f}×); 1.2× stock needs {1.2 * total / stock:.1f} "
                  "cores for the decision path")
        self.figures["cpu_projection"] = {
            "stock_ms": stock, "lean_ms": lean, "interceptor_ms": interceptor,
            "firewall_total_ms": total, "stock_rps": stock_rate, "firewall_rps": one,
            "ratio": one / stock_rate, "cores_for_1_2x": 1.2 * total / stock,
        }

    def archive(self, connections: int, catch_up: CatchUp, beside: Beside, decided: float,
                published: float, archived: float, waiting: str | None) -> None:
        self.section("6. Audit: the archive catching up, then beside the proxy at the load "
                     "of item 1")
        took = ("not within the wait" if catch_up.seconds is None
                else f"in {catch_up.seconds:.1f} s")
        cores = ", ".join(f"{name} {busy:.2f}" for name, busy in catch_up.cores.items())
        self.line(f"  records items 1 to 7 left in the stream: {catch_up.backlog}; archived "
                  f"{took} once audit started again: {catch_up.rate:.0f} records/s with the "
                  f"proxy idle (cores busy meanwhile: {cores})")
        if beside.firewall:
            self._beside(connections, beside)
        whole = decided == published == archived and waiting is None
        self.line(f"  since the pause: decisions made {decided:.0f}, records published "
                  f"{published:.0f}, archived {archived:.0f}"
                  + (" (every one in the stream and the archive)" if whole else ""))
        if not whole:
            self.problem(f"item 6: not every decision since the pause was archived "
                         f"(made {decided:.0f}, published {published:.0f}, archived "
                         f"{archived:.0f}" + (f", still waiting: {waiting}" if waiting else "")
                         + ")")
        self.figures["audit"] = {
            "backlog": catch_up.backlog, "backlog_seconds": catch_up.seconds,
            "backlog_records_per_s": catch_up.rate, "backlog_cores": catch_up.cores,
            "decided": decided, "published": published, "archived": archived,
        }

    def _beside(self, connections: int, beside: Beside) -> None:
        load_seconds = sum(w.result.seconds for w in beside.firewall)
        rate = beside.archived / load_seconds if load_seconds else math.nan
        stock = _rate(beside.stock)
        firewall = _rate(beside.firewall)  # requests decided per second, all windows
        self.line(f"  beside the proxy, {connections} connections: {firewall:.0f} "
                  f"decisions/s, {rate:.0f} records/s archived in the same windows "
                  f"(statuses {_statuses(beside.firewall)}; errors "
                  f"{sum(w.result.errors for w in beside.firewall)})")
        slowest = beside.slowest_catch_up
        drained = ("not within the wait after a window" if slowest is None
                   else f"within {slowest:.1f} s after each window ended")
        self.line(f"  consumer lag during that load (records not yet acknowledged): median "
                  f"{beside.lag.median:.0f}, peak {beside.lag.peak}; caught up {drained}"
                  + (f"; sampling error {beside.lag.error}" if beside.lag.error else ""))
        ratio, _ = paired_ratio(beside.firewall, beside.stock)
        added_p50, added_p99 = added_latency(beside.latencies["lean"],
                                             beside.latencies["firewall"])
        self.line(f"  the firewall with the archive beside it, on the same {os.cpu_count()} "
                  f"cores: {firewall:.0f} req/s against stock mitmdump's {stock:.0f} "
                  f"({ratio:.2f}×, median of the rounds' ratios); latency added at 1 "
                  f"connection p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms (not targets: "
                  "items 1 and 2 measure the decision path)")
        self.figures["beside_archive"] = {
            "ratio": ratio, "stock": stock, "firewall": firewall,
            "records_per_s": rate, "decisions_per_s": firewall, "lag_median": beside.lag.median,
            "lag_peak": beside.lag.peak, "caught_up_after_s": slowest,
            "latency_added_ms": {"p50": added_p50, "p99": added_p99},
        }
        self.aside.append(f"with the archive beside the proxy (item 6): {ratio:.2f}× stock, "
                          f"latency added p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms")

    def cpu_table(self, windows: list[Window], title: str) -> None:
        self.section(f"CPU per request by process ({title}), ms")
        table = _median_cpu(windows)
        for name, ms in table.items():
            self.line(f"  {name:<30} {ms:6.3f} ms/request")
        total = sum(_firewall_only(table).values())
        capacity = 1000 / total if total else math.nan
        self.line(f"  {'total of the processes above, no upstream, no client':<30} "
                  f"{total:6.3f} ms/request  → about {capacity:.0f} requests/s per core")
        self.figures.setdefault("cpu_ms_per_request", {})[title] = table

    def bus(self, found: Calibration) -> None:
        self.section("The bus on this machine: one nats-py request-reply (calibration)")
        figures = found.figures()
        self.line(f"  back to back          p50 {figures['p50_ms']:5.2f} ms  p99 "
                  f"{figures['p99_ms']:5.2f} ms  client CPU {figures['client_cpu_us']:.0f} µs "
                  "(its event-loop thread) "
                  f"(n={figures['requests']:.0f})")
        self.line(f"  1 ms between requests p50 {figures['paced_p50_ms']:5.2f} ms  p99 "
                  f"{figures['paced_p99_ms']:5.2f} ms  (processes that slept run cold)")
        self.line(f"  the issue's reference machine: about {REFERENCE_REQUEST_REPLY_MS} ms p50 "
                  f"and {REFERENCE_CLIENT_CPU_US:.0f} µs of client CPU; the firewall's path "
                  "is three hops of this bus (one and a half request-replies), each with a "
                  "service's own work beside it")
        self.figures["bus"] = figures

    def latency(self, found: dict[str, tuple[float, float, int]], added_p50: float,
                added_p99: float, rounds_p50: list[float] | None = None) -> None:
        self.section("2. Latency added at 1 connection (firewall minus lean master)")
        for name, (p50, p99, count) in found.items():
            self.line(f"  {name:<9} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  (n={count})")
        self.line(f"  added: p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms (every round's "
                  "samples together)")
        self.figures["latency_added_ms"] = {"p50": added_p50, "p99": added_p99}
        if rounds_p50:
            self.line("  each round's own added p50: "
                      + ", ".join(f"{value:+.2f}" for value in rounds_p50) + " ms")
            self.figures["latency_added_ms"]["rounds_p50"] = rounds_p50
        self.target("2. decision path: added latency p50", added_p50, "≤ 1.5 ms",
                    added_p50 <= 1.5, "ms")
        self.target("2. decision path: added latency p99", added_p99, "≤ 5 ms",
                    added_p99 <= 5, "ms")

    def latency_cpu(self, lean: list[Window], firewall: list[Window],
                    rounds_p50: list[float]) -> None:
        """Item 2's CPU: what each process spent per request at one connection, and how
        much of each round's added p50 the firewall's extra CPU accounts for. At one
        connection a request runs through the processes one after another, so what the
        added p50 holds beyond that CPU is waiting: for a process to wake, or for a core."""
        if not lean or not firewall:
            return
        firewall_table = _median_cpu(firewall)
        by_process = {name: ms for name, ms in _firewall_only(firewall_table).items()
                      if ms >= 0.005}
        lean_ms = statistics.median(_path_ms(window) for window in lean)
        self.line(f"  CPU per request at 1 connection (median of the rounds): lean master "
                  f"{lean_ms:.2f} ms; firewall "
                  + ", ".join(f"{name} {ms:.2f}" for name, ms in by_process.items()) + " ms")
        extra = [_path_ms(f) - _path_ms(b) for b, f in zip(lean, firewall, strict=True)]
        waiting = [added - cpu for added, cpu in zip(rounds_p50, extra, strict=True)]
        self.line("  each round's CPU per request beyond the lean master's: "
                  + ", ".join(f"{value:.2f}" for value in extra) + " ms")
        self.line("  each round's added p50 beyond that CPU (waiting: for a process to wake, "
                  "or for a core): " + ", ".join(f"{value:+.2f}" for value in waiting) + " ms")
        self.figures["latency_added_ms"]["rounds_extra_cpu_ms"] = extra
        self.figures["latency_added_ms"]["rounds_waiting_ms"] = waiting
        self.figures.setdefault("cpu_ms_per_request", {})["1 connection, firewall"] = \
            firewall_table
        self.figures["cpu_ms_per_request"]["1 connection, lean master"] = _median_cpu(lean)

    def new_connections(self, found: dict[str, list[Window]], clients: int) -> None:
        self.section(f"3. New TLS connections per second ({clients} clients, one request each)")
        rates = {}
        for name, windows in found.items():
            rates[name] = statistics.median(w.result.rate for w in windows)
            proxy_ms = statistics.median(
                w.cpu_ms_per_request().get("interceptor" if name == "firewall" else name, 0.0)
                for w in windows)
            self.line(f"  {name:<9} {rates[name]:6.0f} connections/s, "
                      f"proxy CPU {proxy_ms:.1f} ms per connection (statuses "
                      f"{_statuses(windows)})")
        ratio = rates["firewall"] / rates["stock"] if rates["stock"] else math.nan
        self.line(f"  ratio interceptor / stock mitmdump: {ratio:.2f}×")
        self.figures["new_connections"] = {**rates, "ratio": ratio}

    def scaling(self, one: list[Window], two: list[Window]) -> None:
        self.section("7. Scaling: interceptor processes behind the same bus")
        ratio, rounds = paired_ratio(two, one)
        rates = {label: statistics.median(w.result.rate for w in windows) if windows
                 else math.nan for label, windows in (("one", one), ("two", two))}
        self.line(f"  1 interceptor:  {rates['one']:6.0f} req/s")
        self.line(f"  2 interceptors: {rates['two']:6.0f} req/s  ({ratio:.2f}× one, the median "
                  f"of the rounds' own ratios: {', '.join(f'{r:.2f}' for r in rounds)})")
        busy: dict[str, float] = {}
        for label, windows in (("1 interceptor", one), ("2 interceptors", two)):
            ours = statistics.median(sum(w.cpu.values()) / (w.result.seconds or 1.0)
                                     for w in windows)
            others = statistics.median(w.others_cores for w in windows)
            busy[label] = ours
            self.line(f"  {label}: our processes and the client kept {ours:.2f} cores busy, "
                      f"other work {others:.2f}, of {os.cpu_count()}")
        self.figures["scaling"] = {"one": rates["one"], "two": rates["two"], "ratio": ratio,
                                   "rounds": rounds, "cores_busy": busy["2 interceptors"]}

    def profile(self, found: Profile | str) -> None:
        self.section("Profile of the interceptor on the warm path (py-spy)")
        if isinstance(found, str):
            self.line(f"  no profile: {found}")
            return
        self.line(f"  {found.samples} samples (py-spy --gil: interpreter time only, kernel time "
                  f"excluded); raw stacks in {found.path} (kept with --data-dir)")
        self.line("  by package (own time):")
        for name, count in found.groups.most_common():
            self.line(f"    {found.share(count):6.1%}  {name}")
        self.line("  functions with the most own time:")
        for name, count in found.own.most_common(TOP):
            self.line(f"    {found.share(count):6.1%}  {name}")
        self.line("  the firewall's own code, inclusive:")
        for name, count in found.inclusive.most_common(TOP):
            self.line(f"    {found.share(count):6.1%}  {name}")

    def summary(self) -> None:
        self.section("Targets")
        for target in self.targets:
            verdict = "met" if target.met else "NOT MET"
            self.line(f"  {target.item:<44} {target.measured:8.2f} {target.unit:<3} "
                      f"target {target.target:<9} {verdict}")
        for text in self.aside:
            self.line(f"  not a target: {text}")
        machine = self.figures.get("cpu_projection")
        if machine is not None and machine["stock_ms"] > 0:
            stock = machine["stock_ms"]
            self.line(f"  this machine: stock mitmdump needed {stock:.2f} ms of CPU per request, "
                      f"{stock / REFERENCE_STOCK_MS:.1f}× the issue's reference machine "
                      f"({REFERENCE_STOCK_MS} ms). Latency and µs figures grow with that; the "
                      "ratios (items 1, 3, 7) are measured side by side")
            self.figures["machine"] = {"stock_ms": stock, "reference_stock_ms": REFERENCE_STOCK_MS,
                                       "slower_than_reference": stock / REFERENCE_STOCK_MS}
        bus = self.figures.get("bus")
        if bus is not None:
            p50 = bus["p50_ms"]
            self.line(f"  this machine's bus: one nats-py request-reply took {p50:.2f} ms p50, "
                      f"{p50 / REFERENCE_REQUEST_REPLY_MS:.1f}× the reference's "
                      f"{REFERENCE_REQUEST_REPLY_MS} ms (paced 1 ms apart: "
                      f"{bus['paced_p50_ms']:.2f} ms)")
            self.figures.setdefault("machine", {}).update(
                request_reply_ms=p50, reference_request_reply_ms=REFERENCE_REQUEST_REPLY_MS)
        if self.problems:
            self.section("Problems (the run exits 1)")
            for text in self.problems:
                self.line(f"  ! {text}")
        self.figures["targets"] = {t.item: {"measured": t.measured, "met": t.met}
                                   for t in self.targets}
        self.figures["problems"] = self.problems

    def _quote(self, output: str, code: int) -> None:
        for text in output.strip().splitlines():
            self.line(f"  | {text}")
        if code:
            self.line(f"  (exited with {code})")


def _median_cpu(windows: list[Window]) -> dict[str, float]:
    """CPU ms per request by process, the median over the windows, by name."""
    merged: dict[str, list[float]] = {}
    for window in windows:
        for name, ms in window.cpu_ms_per_request().items():
            merged.setdefault(name, []).append(ms)
    return {name: statistics.median(values) for name, values in sorted(merged.items())}


def paired_ratio(measured: list[Window], baseline: list[Window]) -> tuple[float, list[float]]:
    """The median over the rounds of each round's own ratio of rates, and those ratios:
    a round's two windows ran a few seconds apart, so a slow spell of the machine
    touches both, where a ratio of the two medians would compare different spells."""
    ratios = [m.result.rate / b.result.rate
              for m, b in zip(measured, baseline, strict=False) if b.result.rate]
    return (statistics.median(ratios) if ratios else math.nan), ratios


def _rate(windows: list[Window]) -> float:
    """Requests per second over all the windows together."""
    seconds = sum(w.result.seconds for w in windows)
    return sum(w.result.requests for w in windows) / seconds if seconds else math.nan


def _firewall_only(table: dict[str, float]) -> dict[str, float]:
    """The firewall's own processes: not the upstream stand-in, not the load generator."""
    return {name: ms for name, ms in table.items()
            if not name.startswith(("upstream", "load generator"))}


def _path_ms(window: Window) -> float:
    """CPU ms per request of the proxy's own processes in one window (all of the
    firewall's, or the baseline proxy): no upstream, no load generator."""
    return sum(_firewall_only(window.cpu_ms_per_request()).values())


def _statuses(windows: list[Window]) -> str:
    counts: dict[int, int] = {}
    for window in windows:
        for status, count in window.result.statuses.items():
            counts[status] = counts.get(status, 0) + count
    return " ".join(f"{status}×{count}" for status, count in sorted(counts.items())) or "none"


def expected_block_share(mix: str) -> float:
    """The share of a mix's sends the demo rules block."""
    counts = expected_verdicts(mix)
    return counts.get("block", 0) / max(1, sum(counts.values()))
