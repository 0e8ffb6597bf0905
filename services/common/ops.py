"""Operational plumbing shared by the services: logging, named tasks, and the small
HTTP endpoint that serves ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import gc
import logging
import platform
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, NoReturn

import orjson
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

_tasks: set[asyncio.Task[Any]] = set()


# A young collection after this many new container objects; CPython's default is 700.
YOUNG_COLLECTION_THRESHOLD = 5000


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a service's steady state, once start-up
    is done.

    What start-up built (modules, settings, compiled rules, connections) leaves the
    collector's scans: it lives as long as the process, and rescanning it on every
    full collection costs each request dearly. A start-up object that later becomes
    part of a reference cycle is never freed, which start-up objects (once each) can
    afford.

    Young collections then wait for 5,000 new container objects instead of 700: a
    request makes hundreds (models, dicts, lists), nearly all freed by reference
    counting as soon as it is answered, and each young collection scans whatever is
    alive at that moment. The decider spent a tenth of its time per verdict in them
    at the default (docs/performance.md); a young collection of 5,000 objects takes
    about 0.1 ms here."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def run_forever(
    main: Coroutine[Any, Any, Any], event_loop: str = "auto", eager_tasks: bool = False
) -> Any:
    """Run a service's main coroutine to the end on the chosen event loop.

    ``auto`` takes uvloop when it is installed (its C transports cut the CPU and the
    wake-up latency of every message on the bus; docs/performance.md) and asyncio's own
    loop otherwise; ``uvloop`` insists on it; ``asyncio`` never uses it.

    ``eager_tasks``: the coroutine installs asyncio's eager task factory (mitmproxy's
    master does). Some pairs of uvloop and CPython cannot run it (below); then ``auto``
    takes asyncio's loop and says so, and ``uvloop`` is refused with the reason.
    """
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                main.close()
                _refuse_uvloop("uvloop is not installed (pip install uvloop)")
        else:
            try:
                why = _eager_task_problem(uvloop) if eager_tasks else None
            except BaseException:
                main.close()
                raise
            if why is None:
                return asyncio.run(main, loop_factory=uvloop.new_event_loop)
            if event_loop == "uvloop":
                main.close()
                _refuse_uvloop(why + ", or TFW_EVENT_LOOP=asyncio")
            log.warning("%s; running on asyncio's own event loop instead", why)
    return asyncio.run(main)


EagerStart = Literal["eager", "lazy", "refused"]


def eager_task_start(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> tuple[EagerStart, str]:
    """How a loop made by ``new_loop`` starts a task once asyncio's eager task factory
    is installed, as mitmproxy's master installs it on the running loop: ``eager`` (at
    once), ``lazy`` (on the next turn: correct, as uvloop 0.23 does on CPython 3.13.3
    and newer) or ``refused`` (the factory raised, with the error's text: uvloop 0.23
    on CPython 3.13.0 to 3.13.2, where mitmproxy's master would die on its first
    task)."""

    async def probe() -> EagerStart:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)
        coro = _nothing()
        try:
            task = loop.create_task(coro)
        except BaseException:
            coro.close()
            raise
        finally:
            loop.set_task_factory(None)
        started = task.done()
        await task
        return "eager" if started else "lazy"

    loop = new_loop()
    try:
        return loop.run_until_complete(probe()), ""
    except TypeError as exc:
        return "refused", str(exc)[:200]
    finally:
        loop.close()


def _eager_task_problem(uvloop: Any) -> str | None:
    """Why uvloop cannot run asyncio's eager task factory here, or None when it can
    (a lazy start is correct, and said once)."""
    start, problem = eager_task_start(uvloop.new_event_loop)
    if start == "lazy":
        log.info(
            "uvloop %s starts tasks on the next loop turn on Python %s, not at once "
            "as asked (it passes eager_start=None): correct, only less eager",
            uvloop.__version__,
            platform.python_version(),
        )
    if start != "refused":
        return None
    return (
        f"uvloop {uvloop.__version__} cannot run asyncio's eager task factory on "
        f"Python {platform.python_version()} ({problem}; CPython 3.13.0 to 3.13.2 refuse "
        "the eager_start argument uvloop passes): use Python 3.12 or 3.13.3 and newer"
    )


async def _nothing() -> None:
    return None


def _refuse_uvloop(why: str) -> NoReturn:
    from services.common.settings import SettingsError

    raise SettingsError([("TFW_EVENT_LOOP", "'uvloop'", why)]) from None


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Start a named background task and keep a reference until it ends.

    A task that dies with an exception is logged with its name, never lost silently.
    """
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _tasks.add(task)
    task.add_done_callback(_task_done)
    return task


def _task_done(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("decision_id", "subject", "service"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO", fmt: str = "auto", service: str = "") -> None:
    """Configure the root logger once, from ``main``: JSON when not on a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        prefix = f"{service} " if service else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("nats", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


Check = Callable[[], bool]


class HealthServer:
    """A deliberately small HTTP/1.1 server for probes and Prometheus scrapes.

    ``/healthz`` answers 200 while the process runs; ``/readyz`` answers 200 only when
    every readiness check passes (503 with the failing names otherwise); ``/metrics``
    renders the Prometheus registry.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry = REGISTRY,
        read_timeout_s: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.read_timeout_s = read_timeout_s
        self.checks: dict[str, Check] = {}
        self.started = time.monotonic()
        self._server: asyncio.Server | None = None

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health endpoint on http://%s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def failing(self) -> list[str]:
        failed = []
        for name, check in self.checks.items():
            try:
                if not check():
                    failed.append(name)
            except Exception:
                log.exception("readiness check %s raised", name)
                failed.append(name)
        return failed

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), self.read_timeout_s)
            while (
                header := await asyncio.wait_for(reader.readline(), self.read_timeout_s)
            ) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                if len(header) > 8192:
                    break
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, ctype, body = self._route(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/healthz":
            uptime = round(time.monotonic() - self.started, 1)
            return "200 OK", "application/json", orjson.dumps({"status": "ok", "uptime_s": uptime})
        if path == "/readyz":
            failed = self.failing()
            if failed:
                return (
                    "503 Service Unavailable",
                    "application/json",
                    orjson.dumps({"status": "not ready", "failing": failed}),
                )
            return "200 OK", "application/json", orjson.dumps({"status": "ready"})
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4", generate_latest(self.registry)
        return "404 Not Found", "text/plain", b"not found\n"
