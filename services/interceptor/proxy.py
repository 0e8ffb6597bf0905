"""The interceptor process: a lean mitmproxy master with only the addons it needs.

Stock ``mitmdump`` loads about 35 addons and spends roughly half its CPU in them; the
firewall needs the proxy server, protocol detection, TLS, proxy authentication and
``block`` (the guards against open-proxy use), ``map_remote`` for demos, and its own
addon. ``stream_large_bodies`` is never set: controlled requests are decided whole.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from mitmproxy import options
from mitmproxy.addons import (
    block,
    core,
    errorcheck,
    mapremote,
    next_layer,
    proxyauth,
    proxyserver,
    tlsconfig,
)
from mitmproxy.master import Master

from services.common.bus import connect
from services.common.contracts import instance_name
from services.common.ops import HealthServer, configure_logging, run_forever, settle_heap, spawn
from services.common.settings import SettingsError
from services.interceptor.addon import Interceptor
from services.interceptor.hooks import use_hook_index
from services.interceptor.settings import InterceptorSettings

log = logging.getLogger(__name__)


def build_master(settings: InterceptorSettings, addon: Interceptor) -> Master:
    """A mitmproxy master with only the addons the interceptor needs, ours before
    map_remote (the decision is about the real Teams host, not a simulator)."""
    os.makedirs(settings.confdir, mode=0o700, exist_ok=True)
    opts = options.Options(
        listen_host=settings.listen_host,
        listen_port=settings.listen_port,
        confdir=settings.confdir,
    )
    master = use_hook_index(Master(opts, with_termlog=False))
    tls = tlsconfig.TlsConfig()
    master.addons.add(
        core.Core(),
        block.Block(),
        proxyauth.ProxyAuth(),
        tls,
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        errorcheck.ErrorCheck(),
        # Decide before map_remote rewrites the destination (demos and tests send
        # Teams hosts to a simulator): the decision is about the real Teams host.
        addon,
        mapremote.MapRemote(),
    )
    updates: dict[str, object] = {
        "ssl_insecure": settings.ssl_insecure,
        "map_remote": settings.map_remote,
        "connection_strategy": "lazy",
        "block_global": settings.block_global,
    }
    if settings.proxyauth:
        updates["proxyauth"] = settings.proxyauth
    opts.update(**updates)
    # mitmproxy creates the CA in TlsConfig's `running` hook, which fires only after
    # the proxy already listens: create it now, so no client meets a proxy without one.
    tls.configure({"confdir"})
    return master


async def serve(settings: InterceptorSettings) -> None:
    """Run the proxy until SIGTERM or SIGINT, then drain NATS."""
    instance = instance_name("interceptor")
    addon = Interceptor(settings, instance)
    master = build_master(settings, addon)
    health = HealthServer(settings.http_host, settings.http_port)
    health.add_check("nats", lambda: addon.nc is not None and addon.nc.is_connected)
    await health.start()
    addon.nc = await connect(settings, instance)
    if settings.observe:
        spawn(addon.observer.run(), "interceptor-observations")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, master.shutdown)
    log.info("proxy listening on %s:%d", settings.listen_host, settings.listen_port)
    settle_heap()
    try:
        await master.run()
    finally:
        log.info("interceptor draining")
        try:
            await asyncio.wait_for(addon.nc.drain(), settings.drain_timeout_s)
        except Exception as exc:
            log.warning("drain did not finish cleanly: %s", exc)
        await health.stop()
        log.info("interceptor stopped")


def main() -> int:
    """Entry point of ``python -m services.interceptor``."""
    try:
        settings = InterceptorSettings.load()
    except SettingsError as exc:
        print(f"interceptor: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, "interceptor")
    try:
        # mitmproxy's master installs asyncio's eager task factory.
        run_forever(serve(settings), settings.event_loop, eager_tasks=True)
    except SettingsError as exc:
        print(f"interceptor: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        log.error("interceptor cannot start: %s", exc)
        return 1
    return 0
