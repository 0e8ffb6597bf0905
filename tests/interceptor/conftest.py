"""Helpers for the interceptor's integration tests: a stand-in decision service on the
bus (the real resolver and decider are not needed to test how verdicts are applied),
a recorder of observations, and the interceptor's own metrics."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from services.common.contracts import (
    QUEUE_RESOLVER,
    Decision,
    InterceptedRequest,
    MatchedRule,
    Observation,
    Subjects,
    Verdict,
    decode,
    encode,
)
from tests.support.upstream import Received
from tfw.stack import Stack


class TeamsStandIn:
    """A local HTTP server in place of Teams: records each request whole (chunked
    bodies included) and answers 201, or a JSON body set per path suffix."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, bytes] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body = b""
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return body
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                stand_in.received.append(Received(self.command, self.path, headers, self._body()))
                path = self.path.split("?", 1)[0]
                found = [body for end, body in stand_in.answers.items() if path.endswith(end)]
                payload = found[0] if found else b'{"OriginalArrivalTime": 1764493200123}'
                self.send_response(200 if found else 201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TeamsStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Reply:
    """What the stand-in answers: a verdict, raw bytes with headers, or nothing."""

    data: bytes | None
    headers: dict[str, str] | None = None
    delay_s: float = 0.0


Behaviour = Callable[[InterceptedRequest], Reply]


def allow(request: InterceptedRequest) -> Reply:
    return Reply(encode(Verdict(decision_id=request.id, decision=Decision.ALLOW)))


@dataclass
class StandInDecider:
    """Answers ``<prefix>.v1.intercepted`` from a thread of its own, as the resolver
    and decider together would, and records every request and observation."""

    nats_url: str
    prefix: str
    answering: bool = True
    behaviour: Behaviour = allow
    requests: list[InterceptedRequest] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> StandInDecider:
        self.thread.start()
        assert self.ready.wait(10), "stand-in decider did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        subjects = Subjects(self.prefix)
        nc = await nats.connect(self.nats_url)
        self._stop = asyncio.Event()

        tasks: set[asyncio.Task[None]] = set()

        async def answer(msg: Msg, reply: Reply) -> None:
            await asyncio.sleep(reply.delay_s)
            if reply.data is not None:
                await nc.publish(msg.reply, reply.data, headers=reply.headers)

        async def on_request(msg: Msg) -> None:
            request = decode(InterceptedRequest, msg.data)
            self.requests.append(request)
            # Each answer in its own task, so a slow one never holds up the next.
            task = asyncio.get_running_loop().create_task(answer(msg, self.behaviour(request)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def on_observation(msg: Msg) -> None:
            self.observations.append(decode(Observation, msg.data))

        if self.answering:
            await nc.subscribe(subjects.intercepted, queue=QUEUE_RESOLVER, cb=on_request)
        await nc.subscribe(subjects.observed, cb=on_observation)
        await nc.flush()
        self.ready.set()
        await self._stop.wait()
        try:
            await asyncio.wait_for(nc.drain(), 3)
        except (TimeoutError, nats.errors.Error):
            await nc.close()

    def wait_for_observations(self, count: int, timeout: float = 5.0) -> list[Observation]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.observations) < count:
            time.sleep(0.02)
        return list(self.observations)


def verdict(decision: Decision, rules: tuple[str, ...] = (), **fields: object) -> Behaviour:
    """A behaviour answering every request with the same kind of verdict."""

    def answer(request: InterceptedRequest) -> Reply:
        made = Verdict(
            decision_id=request.id,
            decision=decision,
            rules=[MatchedRule(name=name) for name in rules],
            **fields,
        )
        return Reply(encode(made))

    return answer


def metric(http_port: int, name: str, **labels: str) -> float:
    """One sample of the interceptor's /metrics, 0 when absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if found == wanted:
            return float(match.group(3))
    return 0.0


@dataclass
class Proxy:
    """One running interceptor and what surrounds it."""

    stack: Stack
    upstream: TeamsStandIn
    decider: StandInDecider
    port: int
    http_port: int
    ca: Path

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.http_port, name, **labels)


def start_proxy(
    stack: Stack, upstream: TeamsStandIn, prefix: str, env: dict[str, str]
) -> tuple[int, int, Path]:
    """Start the interceptor with every Teams host mapped to the recording upstream."""
    process = stack.start_service(
        "interceptor",
        {
            "TFW_SUBJECT_PREFIX": prefix,
            "TFW_MAP_REMOTE": f"|https?://[^/]+/|http://127.0.0.1:{upstream.port}/",
            **env,
        },
    )
    assert process.port and process.http_port
    return process.port, process.http_port, stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"


ProxyFactory = Callable[..., Proxy]


@pytest.fixture(scope="module")
def proxy_factory(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyFactory]:
    """Starts interceptors, each with its own upstream and stand-in decider (and, with
    ``own_nats``, its own nats-server), and stops all of them when the module ends."""
    cleanups: list[Callable[[], None]] = []

    def make(env: dict[str, str], own_nats: bool = False, stand_in: bool = True) -> Proxy:
        prefix = f"ti{len(cleanups)}x{int(time.time() * 1000) % 10**8}"
        data = tmp_path_factory.mktemp("interceptor")
        stack = Stack(data, log=infra.log, nats_url=None if own_nats else infra.nats_url)
        cleanups.append(stack.stop)
        if own_nats:
            stack.start_nats()
        upstream = TeamsStandIn().__enter__()
        cleanups.append(lambda: upstream.__exit__())
        assert stack.nats_url
        decider = StandInDecider(stack.nats_url, prefix, answering=stand_in).__enter__()
        cleanups.append(lambda: decider.__exit__())
        port, http_port, ca = start_proxy(stack, upstream, prefix, env)
        return Proxy(stack, upstream, decider, port, http_port, ca)

    try:
        yield make
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


@dataclass
class H2Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def h2_post(
    proxy_port: int, ca: Path, url: str, headers: dict[str, str], chunks: list[bytes]
) -> H2Answer:
    """POST over HTTP/2 through the proxy's CONNECT tunnel, the body in DATA frames and
    no content-length (httpx offers http/1.1 first, which the proxy then picks)."""
    import socket
    import ssl

    import h2.config
    import h2.connection
    import h2.events

    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    raw = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += raw.recv(4096)
    assert reply.split(b" ", 2)[1] == b"200", reply
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(raw, server_hostname=host)
    assert sock.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    request_headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", host),
        (":path", path),
        *((name.lower(), value) for name, value in headers.items()),
    ]
    conn.send_headers(1, request_headers)
    sock.sendall(conn.data_to_send())
    status, answer_headers, body, done = 0, {}, b"", False
    pending = list(chunks)
    while not done:
        while pending and conn.local_flow_control_window(1) >= len(pending[0]):
            conn.send_data(1, pending.pop(0), end_stream=not pending)
        sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                answer_headers = {k.decode(): v.decode() for k, v in event.headers}
                status = int(answer_headers[":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                done = True
        sock.sendall(conn.data_to_send())
    sock.close()
    return H2Answer(status, answer_headers, body)


class TlsServer:
    """An HTTPS server on 127.0.0.1 with its own self-signed certificate: a client that
    trusts only that certificate proves nothing decrypted the connection on the way."""

    def __init__(self, directory: Path) -> None:
        import ssl

        from tests.support.certs import self_signed

        self.cert_file, key_file = self_signed(directory)
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                payload = b"hello from the real server"
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(self.cert_file, key_file)
        self.server.socket = server_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def context(self) -> Any:
        import ssl

        return ssl.create_default_context(cafile=str(self.cert_file))

    def __enter__(self) -> TlsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
