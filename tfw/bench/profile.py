"""A CPU profile of the interceptor on the warm path, sampled with py-spy.

py-spy samples the running process from outside (no instrumentation, so the profile
shows where the time goes at full speed). The raw collapsed stacks are kept next to
the run's data; the summary is the functions with the most samples of their own, the
share of each package, and the inclusive share of the firewall's own hooks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RATE_HZ = 200
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")
GROUPS = (
    ("services/interceptor", "firewall addon (services.interceptor)"),
    ("services/common", "contracts and bus (services.common)"),
    ("mitmproxy/proxy", "mitmproxy proxy core (layers, server)"),
    ("mitmproxy/", "mitmproxy other (http, addons, certs)"),
    ("nats/", "nats-py"),
    ("pydantic", "pydantic"),
    ("asyncio/", "asyncio event loop"),
    ("ssl.py", "ssl"),
    ("prometheus_client", "prometheus_client"),
)


@dataclass
class Profile:
    """What the samples say; ``path`` holds the raw collapsed stacks."""

    path: Path
    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)
    groups: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0


def find_py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def profile_interceptor(pid: int, seconds: float, out: Path) -> Profile | str:
    """Sample ``pid`` for ``seconds``; a Profile, or the reason there is none."""
    py_spy = find_py_spy()
    if py_spy is None:
        return "py-spy is not installed (pip install -e '.[dev]' brings it)"
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
               "--rate", str(RATE_HZ), "--format", "raw", "--output", str(out), "--nonblocking",
               "--gil"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                              check=False)
    except subprocess.TimeoutExpired:
        return "py-spy did not finish"
    if done.returncode != 0 or not out.exists():
        reason = (done.stderr or done.stdout).strip().splitlines()
        return f"py-spy failed: {reason[-1] if reason else done.returncode}"
    return summarise(out)


def _label(frame: str) -> tuple[str, str]:
    """(``function (file)``, file path) of one py-spy frame."""
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip(), ""
    path = found.group("file")
    short = "/".join(path.split("/")[-2:])
    return f"{found.group('function')} ({short})", path


def group_of(path: str) -> str:
    for marker, name in GROUPS:
        if marker in path:
            return name
    return "other (stdlib, orjson, threads)"


def summarise(path: Path) -> Profile:
    """Read py-spy's raw collapsed stacks (``frame;frame;… count``)."""
    profile = Profile(path)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_label(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        profile.samples += count
        leaf, leaf_path = frames[-1]
        profile.own[leaf] += count
        profile.groups[group_of(leaf_path)] += count
        ours = {label for label, file in frames if "services/" in file}
        for label in ours:
            profile.inclusive[label] += count
    return profile
