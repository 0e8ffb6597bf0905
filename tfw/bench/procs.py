"""Starting benchmark processes and reading their CPU time from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tfw.stack import ROOT, free_port, wait_for_port

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class Proc:
    """A benchmark process started by PID and stopped by PID."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)


def start_mitmdump(confdir: Path, upstream_port: int) -> tuple[Proc, int]:
    """Stock mitmdump with its default addons and no script of ours."""
    port = free_port()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    proc = Proc(
        [
            str(mitmdump),
            "-q",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "--set",
            f"confdir={confdir}",
            "--set",
            "connection_strategy=lazy",
            "--map-remote",
            f"|https://[^/]+/|http://127.0.0.1:{upstream_port}/",
        ]
    )
    wait_for_port(port, 30, proc.popen)
    return proc, port


def start_lean(confdir: Path, map_remote: str) -> tuple[Proc, int]:
    """The interceptor's master without the firewall addon, with ``map_remote`` as the
    firewall has it: the two differ by the addon alone."""
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "tfw.bench.leanproxy"],
        {
            "TFW_LISTEN_PORT": str(port),
            "TFW_CONFDIR": str(confdir),
            "TFW_MAP_REMOTE": map_remote,
            # As the interceptor runs (tfw.stack): the same master, the same flags.
            "PYTHONOPTIMIZE": os.environ.get("PYTHONOPTIMIZE", "1"),
        },
    )
    wait_for_port(port, 30, proc.popen)
    return proc, port


def settle(seconds: float = 0.3) -> None:
    time.sleep(seconds)
