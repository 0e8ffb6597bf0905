"""The interceptor's lean mitmproxy master with no firewall addon: the baseline that
isolates what deciding costs from what proxying costs."""

from __future__ import annotations

import asyncio
import signal

from services.interceptor.settings import InterceptorSettings


class _Nothing:
    """An addon that does nothing, standing where the firewall addon stands."""


async def serve(settings: InterceptorSettings) -> None:
    from services.interceptor.proxy import build_master

    master = build_master(settings, _Nothing())  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, master.shutdown)
    await master.run()


if __name__ == "__main__":
    from services.common.ops import run_forever

    # The interceptor's own event loop choice, so the baseline differs from the
    # firewall by the firewall addon only.
    settings = InterceptorSettings.load()
    run_forever(serve(settings), settings.event_loop, eager_tasks=True)
