"""Calibration: what one nats-py request-reply costs on this machine.

The issue's reference machine measured about 0.4 ms p50 and 30 µs of client CPU for
one (``tfw.bench.report.REFERENCE_REQUEST_REPLY_MS``). The firewall's path is three
hops on the same bus (interceptor → resolver → decider → interceptor), so this
figure, measured in the same run, is the floor under item 2 on the machine at hand.

A responder of the services' make (:mod:`tfw.bench.echo`: nats-py on the same event
loop) answers on the run's own nats-server. Requests go one at a time, back to back,
then paced like one-connection traffic, where every process sleeps between messages.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NATS

from tfw.bench.measure import percentile
from tfw.bench.procs import Proc

# About an intercepted send's packet.
PAYLOAD = b"x" * 1500
# Between paced requests: a process that slept this long runs its next message cold.
PACE_S = 0.001
READY_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 5.0


@dataclass
class Calibration:
    """Request-reply latencies in ms, back to back and paced, and client CPU in µs."""

    back_to_back_ms: list[float]
    paced_ms: list[float]
    client_cpu_us: float

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.back_to_back_ms)

    @property
    def paced_p50_ms(self) -> float:
        return statistics.median(self.paced_ms)

    def figures(self) -> dict[str, float]:
        return {
            "p50_ms": self.p50_ms,
            "p99_ms": percentile(self.back_to_back_ms, 0.99),
            "paced_p50_ms": self.paced_p50_ms,
            "paced_p99_ms": percentile(self.paced_ms, 0.99),
            "client_cpu_us": self.client_cpu_us,
            "requests": len(self.back_to_back_ms),
        }


async def calibrate(nats_url: str, subject: str, count: int) -> Calibration:
    """Start the responder, time ``count`` request-replies each way, stop it."""
    echo = Proc([sys.executable, "-m", "tfw.bench.echo", "--nats", nats_url,
                 "--subject", subject])
    try:
        nc = NATS()
        try:
            # No reconnection: a server that is gone fails the calibration at once.
            await nc.connect(nats_url, connect_timeout=5, allow_reconnect=False)
            await _until_answered(nc, subject, echo)
            for _ in range(max(count // 10, 5)):  # warm both sides
                await nc.request(subject, PAYLOAD, timeout=REQUEST_TIMEOUT_S)
            # The CPU of the thread that runs the event loop: the client's side of each
            # request-reply (nats-py and the loop), not the bench's other threads.
            started = time.thread_time()
            back_to_back = await _timed(nc, subject, count, 0.0)
            cpu_us = (time.thread_time() - started) / count * 1e6
            paced = await _timed(nc, subject, count, PACE_S)
            return Calibration(back_to_back, paced, cpu_us)
        finally:
            if nc.is_connected:
                await nc.close()
    finally:
        echo.stop()


async def _until_answered(nc: NATS, subject: str, echo: Proc) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if echo.popen.poll() is not None:
            raise RuntimeError(f"the echo responder exited with {echo.popen.returncode}")
        try:
            await nc.request(subject, b"ping", timeout=1.0)
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the echo responder did not answer within {READY_TIMEOUT_S:.0f}s"
                ) from None
            await asyncio.sleep(0.05)


async def _timed(nc: NATS, subject: str, count: int, pace_s: float) -> list[float]:
    times = []
    for _ in range(count):
        if pace_s:
            await asyncio.sleep(pace_s)
        started = time.perf_counter()
        await nc.request(subject, PAYLOAD, timeout=REQUEST_TIMEOUT_S)
        times.append((time.perf_counter() - started) * 1000)
    return times
