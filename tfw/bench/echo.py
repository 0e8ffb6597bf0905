"""A NATS responder for the bench's calibration of the bus: it answers every request on
one subject with the request's own payload, on the services' event loop, so one
request-reply through it is the floor of one hop of the firewall on this machine.

    python -m tfw.bench.echo --nats nats://127.0.0.1:4222 --subject bench.echo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

import nats
from nats.aio.msg import Msg


async def serve(url: str, subject: str) -> None:
    """Answer until stopped, or until the connection is lost (the responder never
    outlives the bench's nats-server)."""
    lost = asyncio.Event()

    async def closed() -> None:
        lost.set()

    nc = await nats.connect(
        url, connect_timeout=5, allow_reconnect=False, closed_cb=closed, disconnected_cb=closed
    )

    async def answer(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(subject, cb=answer)
    await nc.flush()
    print("ready", flush=True)
    try:
        await lost.wait()
    finally:
        if not nc.is_closed:
            await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="NATS echo responder for the bench")
    parser.add_argument("--nats", required=True, help="nats:// URL of the server")
    parser.add_argument("--subject", required=True)
    args = parser.parse_args()

    from services.common.ops import run_forever

    # The services' event loop (TFW_EVENT_LOOP, inherited from the bench), so one hop
    # here costs what a hop costs them.
    with contextlib.suppress(KeyboardInterrupt):
        run_forever(serve(args.nats, args.subject), os.environ.get("TFW_EVENT_LOOP", "auto"))


if __name__ == "__main__":
    main()
