"""A small HTTPS load generator that goes through an HTTP proxy (CONNECT + TLS),
keeps connections alive, and reports throughput and latency percentiles.

Written against asyncio streams with one pre-built request, so the client costs
little CPU next to the proxy it measures (it still shares the machine; the harness
compares configurations measured the same way in the same run).
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    connections_opened: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


def build_request(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_tunnel(
    proxy_port: int, host: str, context: ssl.SSLContext, connect_timeout_s: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", proxy_port), connect_timeout_s
    )
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), connect_timeout_s)
    if b" 200" not in status.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"proxy refused CONNECT: {status[:60]!r}")
    await asyncio.wait_for(
        writer.start_tls(context, server_hostname=host), connect_timeout_s
    )
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _worker(
    proxy_port: int,
    host: str,
    requests: list[bytes],
    context: ssl.SSLContext,
    deadline: float,
    result: LoadResult,
    keep_alive: bool,
) -> None:
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    index = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            if connection is None:
                connection = await open_tunnel(proxy_port, host, context)
                result.connections_opened += 1
            reader, writer = connection
            writer.write(requests[index % len(requests)])
            index += 1
            await writer.drain()
            status = await asyncio.wait_for(read_response(reader), 10)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, ssl.SSLError):
            result.errors += 1
            if connection is not None:
                connection[1].close()
            connection = None
            await asyncio.sleep(0.01)
            continue
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.requests += 1
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if not keep_alive:
            connection[1].close()
            connection = None
    if connection is not None:
        connection[1].close()


async def run_load(
    proxy_port: int,
    host: str,
    requests: list[bytes],
    ca_file: str,
    connections: int = 16,
    seconds: float = 5.0,
    keep_alive: bool = True,
    warmup: float = 0.5,
) -> LoadResult:
    """Drive ``connections`` concurrent clients for ``seconds`` and collect figures."""
    context = ssl.create_default_context(cafile=ca_file)
    if warmup:
        await run_load(
            proxy_port, host, requests, ca_file, connections, warmup, keep_alive, warmup=0
        )
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _worker(proxy_port, host, requests, context, deadline, result, keep_alive)
            for _ in range(connections)
        )
    )
    result.seconds = time.perf_counter() - started
    return result
