"""The firewall under test, started for a benchmark on 127.0.0.1 only.

The real stack (:class:`tfw.stack.Stack`: nats-server, SecantusDB, resolver, decider,
audit, interceptor) with the demo organisation's rules, the Teams simulator answering
the resolver's lookups and the sign-in traffic, and the fast upstream answering the
chat-service sends (interceptor ``map_remote``), so what is measured is the firewall
and not a slow stand-in for Teams. The baselines (stock ``mitmdump`` and the lean
master without the firewall addon) use the same CA and the same upstream.

Every process is started here and stopped here, by PID.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import nats
from nats.aio.client import Client as NATS

from services.common.contracts import Subjects
from tfw.bench.procs import Proc, start_lean, start_mitmdump
from tfw.sim.demo_run import prepare_rules
from tfw.sim.org import Org, load_org
from tfw.sim.teams import TeamsSimulator
from tfw.stack import Process, Stack, free_port, wait_for_port

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
METRIC_TIMEOUT_S = 2.0
SERVICES = ("interceptor", "resolver", "decider", "audit")


def chat_service_to(port: int) -> str:
    """map_remote spec: every legacy chat-service host to the fast upstream."""
    return rf"|https://[a-z0-9-]+\.ng\.msg\.teams\.microsoft\.com/|http://127.0.0.1:{port}/"


def rest_to_simulator(url: str) -> str:
    """map_remote spec: any other Teams host (authz, middle tier) to the simulator."""
    return f"|https://([a-z0-9.-]+)/|{url}/_host/\\1/"


def proxy_map_remote(upstream_port: int, rest_url: str) -> str:
    """The map_remote rules of the firewall's interceptor, and of the lean master: a
    chat-service request is checked against both, whoever serves the rest."""
    return chat_service_to(upstream_port) + ";;" + rest_to_simulator(rest_url)


@dataclass
class Rig:
    """Every process of one benchmark run, and how to read their figures."""

    data_dir: Path
    log: IO[str]
    org: Org = field(default_factory=lambda: load_org(DEMO_DATA / "org.yaml"))
    stack: Stack = field(init=False)
    prefix: str = field(default_factory=lambda: "bench" + secrets.token_hex(3))
    upstream: Proc | None = None
    upstream_port: int = 0
    simulator: TeamsSimulator | None = None
    baselines: dict[str, tuple[Proc, int]] = field(default_factory=dict)
    interceptors: list[Process] = field(default_factory=list)
    _env: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stack = Stack(self.data_dir, log=self.log)

    @property
    def confdir(self) -> Path:
        return self.data_dir / "mitmproxy"

    @property
    def ca_file(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)

    # --- starting ---------------------------------------------------------------------

    def start_upstream(self) -> None:
        self.upstream_port = free_port()
        self.upstream = Proc(
            [sys.executable, "-m", "tfw.bench.upstream", "--port", str(self.upstream_port)]
        )
        wait_for_port(self.upstream_port, 30, self.upstream.popen)

    def start_baselines(self) -> None:
        """Stock mitmdump and the lean master, one after the other (one CA)."""
        self.baselines["stock"] = start_mitmdump(self.confdir, self.upstream_port)
        # The lean master's second rule is never used (it serves no lookups), but
        # it is checked on every request, as in the firewall.
        stand_in = f"http://127.0.0.1:{self.upstream_port}"
        self.baselines["lean"] = start_lean(
            self.confdir, proxy_map_remote(self.upstream_port, stand_in)
        )

    def start_firewall(self) -> None:
        """nats-server, SecantusDB, the Teams simulator and the four services."""
        self.simulator = TeamsSimulator(self.org)
        self.simulator.start()
        self.stack.start_nats()
        self.stack.start_mongo()
        rules = prepare_rules(DEMO_DATA / "rules.yaml", self.data_dir / "rules")
        common = {
            "TFW_SUBJECT_PREFIX": self.prefix,
            "TFW_DATABASE": f"tfw_{self.prefix}",
            "TFW_LOG_LEVEL": "WARNING",
        }
        self._env = {
            "resolver": {
                **common,
                "TFW_TEAMS_REDIRECT": self.simulator.url,
                "TFW_INTERNAL_TENANTS": ",".join(rules.internal_tenants),
            },
            "decider": {**common, "TFW_RULES_FILE": str(rules.path)},
            "audit": common,
            "interceptor": {
                **common,
                "TFW_CONFDIR": str(self.confdir),
                "TFW_MAP_REMOTE": proxy_map_remote(self.upstream_port, self.simulator.url),
            },
        }
        for service in ("resolver", "decider", "audit"):
            self.stack.start_service(service, self._env[service])
        self.add_interceptor()

    def add_interceptor(self) -> Process:
        """One more interceptor process on the same bus, on its own port."""
        env = {**self._env["interceptor"], "TFW_LISTEN_PORT": str(free_port())}
        process = self.stack.start_service("interceptor", env)
        self.interceptors.append(process)
        return process

    def remove_interceptor(self) -> None:
        if len(self.interceptors) > 1:
            self.stack.stop_process(self.interceptors.pop())

    def pause_archive(self) -> None:
        """Stop the audit service: records are still published to the decision stream
        and acknowledged by JetStream, and wait there for its durable consumer."""
        self.stack.stop_process(self.stack.find("audit"))

    def resume_archive(self) -> Process:
        """Start the audit service again; it archives what waited in the stream."""
        return self.stack.start_service("audit", self._env["audit"])

    def stop(self) -> None:
        """Stop everything this rig started, by PID."""
        for proc, _ in self.baselines.values():
            proc.stop()
        self.baselines.clear()
        self.stack.stop()
        self.interceptors.clear()
        if self.upstream is not None:
            self.upstream.stop()
            self.upstream = None
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None

    # --- reading ------------------------------------------------------------------------

    def proxy_port(self, index: int = 0) -> int:
        port = self.interceptors[index].port
        assert port is not None
        return port

    def pids(self) -> dict[str, int]:
        """The firewall's processes by name (interceptors numbered from the second)."""
        found: dict[str, int] = {}
        for process in self.stack.processes:
            if process.popen.poll() is not None:
                continue
            name = process.name
            if name == "interceptor" and name in found:
                name = f"interceptor-{sum(n.startswith('interceptor') for n in found) + 1}"
            found[name] = process.popen.pid
        if self.upstream is not None:
            found["upstream (stand-in)"] = self.upstream.pid
        return found

    def metrics(self, service: str) -> str:
        """The Prometheus text of the running process of ``service`` started last."""
        process = self.stack.find(service)
        url = f"http://127.0.0.1:{process.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=METRIC_TIMEOUT_S) as response:
            return str(response.read().decode("utf-8"))

    async def connect(self) -> NATS:
        assert self.stack.nats_url
        return await nats.connect(self.stack.nats_url, connect_timeout=5)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include ``labels``."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$")
    for line in text.splitlines():
        found = pattern.match(line)
        if not found:
            continue
        shown = found.group(1) or ""
        if all(f'{key}="{value}"' in shown for key, value in labels.items()):
            with contextlib.suppress(ValueError):
                total += float(found.group(2))
    return total
