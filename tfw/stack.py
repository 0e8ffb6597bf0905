"""Starting and stopping the local stack: nats-server, SecantusDB, the four services.

Used by ``tfw up``, ``tfw demo`` and the test suite. Every process is started on
127.0.0.1, its output is prefixed with its name into one log stream, and
:meth:`Stack.stop` ends every process it started (SIGTERM, then SIGKILL), by PID.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("resolver", "decider", "audit", "interceptor")


class StackError(RuntimeError):
    """A server the stack needs is missing or did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise StackError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def wait_for_ready(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until a service's ``/readyz`` answers 200."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"process exited with {process.returncode} before it was ready")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=0.5) as response:
                if response.status == 200:
                    return
        time.sleep(0.1)
    raise StackError(f"{url} not ready after {timeout:.0f}s")


def find_nats_server() -> str:
    found = os.environ.get("TFW_NATS_SERVER") or shutil.which("nats-server")
    for candidate in (found, "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if candidate and Path(candidate).exists():
            return candidate
    raise StackError(
        "nats-server not found: run scripts/setup (it installs the Debian package "
        "'nats-server'), or set TFW_NATS_SERVER, or point TFW_NATS_URL at a server"
    )


def find_secantus() -> str:
    candidates = [
        os.environ.get("TFW_SECANTUSD"),
        str(ROOT / ".venv-secantus" / "bin" / "secantusd-py"),
        shutil.which("secantusd-py"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    raise StackError(
        "secantusd-py not found: run scripts/setup (it installs secantusdb into "
        ".venv-secantus), or set TFW_SECANTUSD, or point TFW_MONGODB_URI at MongoDB"
    )


def dev_token_key(data_dir: Path) -> str:
    """This stack's development token key for the resolver: base64 of 32 random bytes
    kept in ``<data dir>/resolver-token.key`` (mode 0600), so the tokens the resolver
    sealed survive a restart of ``tfw up``. Production takes its key from a Secret."""
    path = data_dir / "resolver-token.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(base64.b64encode(os.urandom(32)).decode())
    return path.read_text(encoding="ascii").strip()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int | None = None
    http_port: int | None = None


@dataclass
class Stack:
    """A set of processes started together and stopped together."""

    data_dir: Path
    log: IO[str] = field(default_factory=lambda: sys.stdout)
    processes: list[Process] = field(default_factory=list)
    nats_url: str | None = None
    mongodb_uri: str | None = None
    quiet: bool = False
    log_filter: Callable[[str], bool] | None = None

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        width = 11
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if self.quiet or (self.log_filter is not None and not self.log_filter(line)):
                continue
            with contextlib.suppress(ValueError, OSError):
                self.log.write(f"{name:<{width}}| {line}\n")
                self.log.flush()
        stream.close()

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        port: int | None = None,
        http_port: int | None = None,
    ) -> Process:
        popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        assert popen.stdout is not None
        threading.Thread(target=self._pump, args=(name, popen.stdout), daemon=True).start()
        process = Process(name, popen, port, http_port)
        self.processes.append(process)
        return process

    # --- infrastructure -------------------------------------------------------------

    def start_nats(
        self,
        port: int | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Start nats-server; ``env`` is its whole environment (the secure profile
        passes the users' passwords this way)."""
        port = port or free_port()
        store = self.data_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        argv = [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
        extra = list(extra or [])
        if not {"-c", "--config"} & set(extra):
            # JetStream reserves each file stream's max_bytes (10 GiB for decisions) up
            # front against a store limit of 75% of the free disk, so a few test
            # deployments on one server would exhaust it; each stream keeps its own limit.
            config = self.data_dir / "nats-jetstream.conf"
            config.write_text("jetstream {\n  max_file_store: 1TB\n}\n", encoding="utf-8")
            extra += ["-c", str(config)]
        process = self.spawn("nats", argv + extra, env=env, port=port)
        wait_for_port(port, 15, process.popen)
        self.nats_url = f"nats://127.0.0.1:{port}"
        return self.nats_url

    def start_mongo(self, port: int | None = None) -> str:
        port = port or free_port()
        store = self.data_dir / "secantus"
        store.mkdir(parents=True, exist_ok=True)
        argv = [
            find_secantus(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(store),
            "--log-level",
            "WARNING",
            # A standalone server keeps no oplog: the firewall uses no change streams
            # or transactions, and the oplog entry of every write cost about a tenth of
            # each archived record (docs/performance.md).
            "--standalone",
        ]
        process = self.spawn("secantusdb", argv, port=port)
        wait_for_port(port, 60, process.popen)
        self.mongodb_uri = f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"
        return self.mongodb_uri

    # --- services ---------------------------------------------------------------------

    def service_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.nats_url:
            env["TFW_NATS_URL"] = self.nats_url
        if self.mongodb_uri:
            env["TFW_MONGODB_URI"] = self.mongodb_uri
        env.update(extra or {})
        return env

    def start_service(
        self,
        service: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        timeout: float = 60,
    ) -> Process:
        http_port = free_port()
        merged = self.service_env({"TFW_HTTP_PORT": str(http_port), **(env or {})})
        argv = [sys.executable, "-m", f"services.{service}"]
        proxy_port = None
        api_port = None
        if service == "audit":  # its query API listens beside the health endpoint
            api_port = int(merged.get("TFW_API_PORT") or free_port())
            merged["TFW_API_PORT"] = str(api_port)
        if service == "interceptor":
            proxy_port = int(merged.get("TFW_LISTEN_PORT") or free_port())
            merged["TFW_LISTEN_PORT"] = str(proxy_port)
            merged.setdefault("TFW_CONFDIR", str(self.data_dir / "mitmproxy"))
            # mitmproxy type-checks every HTTP message's fields and every state-machine
            # event unless Python runs with -O: about 12% of the proxy's CPU per request
            # (docs/performance.md). The interceptor's own code has no assert statements.
            merged.setdefault("PYTHONOPTIMIZE", "1")
        if service == "resolver" and not merged.get("TFW_TOKEN_KEY"):
            merged["TFW_TOKEN_KEY"] = dev_token_key(self.data_dir)
        port = proxy_port or api_port
        process = self.spawn(service, argv, merged, port=port, http_port=http_port)
        if wait:
            wait_for_ready(http_port, timeout, process.popen)
            if proxy_port:
                wait_for_port(proxy_port, timeout, process.popen)
        return process

    def find(self, name: str) -> Process:
        for process in reversed(self.processes):
            if process.name == name and process.popen.poll() is None:
                return process
        raise KeyError(name)

    # --- stopping -----------------------------------------------------------------------

    def stop_process(self, process: Process, timeout: float = 10, sig: int = signal.SIGTERM) -> int:
        popen = process.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, sig)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(popen.pid, signal.SIGKILL)
                popen.wait(5)
        with contextlib.suppress(ValueError):
            self.processes.remove(process)
        return popen.returncode

    def stop(self) -> None:
        """Stop everything, services first and servers last."""
        order = {
            name: rank for rank, name in enumerate(("interceptor", "resolver", "decider", "audit"))
        }
        for process in sorted(self.processes, key=lambda p: order.get(p.name, 50)):
            self.stop_process(process)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
