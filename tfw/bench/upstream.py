"""A fast stand-in for the Teams chat service in benchmarks: HTTP/1.1 keep-alive,
a fixed 201 answer, almost no CPU per request, so the proxy is what gets measured."""

from __future__ import annotations

import asyncio
import contextlib

RESPONSE = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
    b"Content-Length: 37\r\n\r\n"
    b'{"OriginalArrivalTime":1764493200123}'
)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
            await writer.drain()
    writer.close()


async def start(port: int = 0) -> asyncio.Server:
    return await asyncio.start_server(_serve, "127.0.0.1", port)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="fast benchmark upstream")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def run() -> None:
        server = await start(args.port)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    from services.common.ops import run_forever

    with contextlib.suppress(KeyboardInterrupt):
        run_forever(run())


if __name__ == "__main__":
    main()
