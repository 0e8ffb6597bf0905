"""A local Teams service for demos and tests: the chat service on all three front
doors, the middle tier, authz and the thread lookups, serving a fixture organisation.

Usage from Python (tests, the resolver's lookups)::

    from tfw.sim.org import load_org
    from tfw.sim.teams import TeamsSimulator

    with TeamsSimulator(load_org("tfw/demo_data/org.yaml")) as sim:   # or sim.start()
        base = sim.url            # http://127.0.0.1:PORT (sim.port)
        # Send https://{host}{path} as GET {base}/_host/{host}{path}, or as a plain
        # request with the Host header set to the Teams host.
        sim.received              # [Received(method, host, path, headers, body_size, ...)]
        sim.calls["chatsvc.members"]          # per-endpoint counters
        sim.rate_limit(2, retry_after_s=1)    # the next 2 requests get 429 + Retry-After
        sim.switches.federated_bare_array = True   # fetchFederated answers a bare array
        sim.hide_thread("19:…@thread.v2")           # that thread now answers 404
        held = sim.hold("19:…@thread.v2")  # requests naming it wait, as a slow Teams does,
        held.set()                         # until released (or HOLD_LIMIT_S)
    # sim.stop() when not used as a context manager.

Tokens are read from their claims, never verified; an expired ``exp`` is always 401.
A thread lookup by a non-member is 403 (404 with ``behavioroverride: redirectAs404``).
Member pages follow ``pageSize`` (default 100) with an absolute ``nextLink``; the
thread resource itself lists members only for rosters of up to 100.

From a shell: ``python -m tfw.sim.teams --org FILE --port N``; ``GET /_sim/received``
then lists what it received as JSON.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote

from tfw.sim.org import Org, OrgError, load_org
from tfw.sim.routes import SimRequest, SimResponse, Switches, TeamsService

log = logging.getLogger(__name__)

HOST_PREFIX = "/_host/"
MARKER_HEADER = "x-tfw-replay-id"  # set by the client simulator to find its requests
MAX_BODY_BYTES = 64 * 1024 * 1024
SOCKET_TIMEOUT_S = 30
HOLD_LIMIT_S = 30.0  # a held request is answered after this long even if never released


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the simulator received it."""

    method: str
    host: str
    path: str
    headers: dict[str, str]  # lower-case names
    body_size: int
    endpoint: str
    status: int
    time: float
    marker: str | None = None


class TeamsSimulator:
    """The HTTP server around :class:`~tfw.sim.routes.TeamsService`, on 127.0.0.1."""

    def __init__(self, org: Org, port: int = 0, switches: Switches | None = None) -> None:
        self.service = TeamsService(org, switches)
        self.received: list[Received] = []
        self.calls: Counter[str] = Counter()
        self._record_lock = threading.Lock()
        self._holds: dict[str, threading.Event] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def org(self) -> Org:
        return self.service.org

    @property
    def switches(self) -> Switches:
        return self.service.switches

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> int:
        """Serve in a background thread; returns the port."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="teams-sim",
                daemon=True,
            )
            self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> TeamsSimulator:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- switches -------------------------------------------------------------------------

    def rate_limit(self, count: int, retry_after_s: int = 1, endpoint: str | None = None) -> None:
        """Answer the next ``count`` requests (to ``endpoint``, a name prefix such as
        ``chatsvc.members`` or ``mt.``, or to any) with 429 and ``Retry-After``."""
        with self.service.lock:
            self.switches.rate_limited = count
            self.switches.retry_after_s = retry_after_s
            self.switches.rate_limit_endpoint = endpoint

    def hide_thread(self, conversation_id: str) -> None:
        """Make a known thread answer 404, as a deleted or unknown one does."""
        with self.service.lock:
            self.switches.hidden_threads.add(conversation_id)

    def hold(self, fragment: str) -> threading.Event:
        """Keep every request whose path names ``fragment`` (as sent, or percent-decoded)
        waiting until the returned event is set, as a slow Teams would; each is answered
        after :data:`HOLD_LIMIT_S` at the latest. Setting the event ends the hold."""
        released = threading.Event()
        with self._record_lock:
            self._holds[fragment] = released
        return released

    def _wait_if_held(self, path: str) -> None:
        with self._record_lock:
            holds = [(f, e) for f, e in self._holds.items() if not e.is_set()]
        plain = unquote(path)
        for fragment, released in holds:
            if fragment in path or fragment in plain:
                released.wait(HOLD_LIMIT_S)

    # --- what it received --------------------------------------------------------------

    def record(self, entry: Received) -> None:
        with self._record_lock:
            self.received.append(entry)
            self.calls[entry.endpoint] += 1

    def received_with_marker(self, marker: str) -> list[Received]:
        with self._record_lock:
            return [r for r in self.received if r.marker == marker]

    def answer(self, request: SimRequest) -> SimResponse:
        """Route one request, record it, and return the response."""
        self._wait_if_held(request.path)
        endpoint, response = self.service.handle(request)
        self.record(
            Received(
                method=request.method,
                host=request.host,
                path=request.path,
                headers=dict(request.headers),
                body_size=len(request.body),
                endpoint=endpoint,
                status=response.status,
                time=time.time(),
                marker=request.headers.get(MARKER_HEADER),
            )
        )
        return response


def _handler_for(simulator: TeamsSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = SOCKET_TIMEOUT_S
        # Headers and body go out in two writes: without this, Nagle's algorithm and
        # delayed ACKs add about 40 ms to every keep-alive response.
        disable_nagle_algorithm = True

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise ValueError("body too large")
            return self.rfile.read(length) if length > 0 else b""

        def _serve(self) -> None:
            try:
                body = self._read_body()
            except ValueError:
                self._send(SimResponse(413, {"errorCode": 413, "message": "Body too large"}))
                return
            if self.path.startswith("/_sim/received"):
                self._send(SimResponse(200, [asdict(r) for r in simulator.received]))
                return
            host, path = self.headers.get("Host", ""), self.path
            if path.startswith(HOST_PREFIX):
                host, slash, rest = path[len(HOST_PREFIX) :].partition("/")
                path = slash + rest or "/"
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = SimRequest(self.command, host, path, headers, body)
            self._send(simulator.answer(request))

        def _send(self, response: SimResponse) -> None:
            payload = response.payload()
            self.send_response(response.status)
            if payload:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        def log_message(self, format: str, *args: object) -> None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("teams-sim %s", format % args)

    return Handler


def main(argv: list[str] | None = None) -> int:
    """``python -m tfw.sim.teams --org FILE --port N``: serve until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tfw.sim.teams", description=__doc__)
    parser.add_argument("--org", required=True, help="organisation YAML file")
    parser.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1")
    parser.add_argument("--federated-bare-array", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        org = load_org(args.org)
    except OrgError as exc:
        print(f"teams-sim: {exc}")
        return 2
    switches = Switches(federated_bare_array=args.federated_bare_array)
    simulator = TeamsSimulator(org, args.port, switches)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    simulator.start()
    log.info("Teams simulator on %s serving %d conversations", simulator.url,
             len(org.conversations))
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
