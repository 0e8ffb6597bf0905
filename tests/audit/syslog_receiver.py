"""A small RFC 5424 receiver over TCP (optionally TLS) for the forwarder tests."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from syslog_rfc5424_parser import SyslogMessage


class SyslogReceiver:
    """Reads octet-counted frames and parses each with a strict RFC 5424 parser."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls
        self.messages: list[dict[str, object]] = []
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.tls, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    def decision_ids(self) -> list[str]:
        return [m["sd"]["tfw@32473"]["decision_id"] for m in self.messages]  # type: ignore[index]

    async def wait_for(self, count: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while len(set(self.decision_ids())) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                length = await reader.readuntil(b" ")
                frame = await reader.readexactly(int(length))
                self.messages.append(SyslogMessage.parse(frame.decode()).as_dict())
                self.arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
