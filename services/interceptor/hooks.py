"""mitmproxy's addon dispatch, without asking every addon about every hook.

mitmproxy's ``AddonManager.trigger_event`` walks the whole addon chain for each hook of
each request, enters a context manager per addon and looks the hook up by name on it,
though most addons implement a few hooks. In the interceptor's warm-path profile that
machinery was about a seventh of the proxy's time (docs/performance.md).
:class:`HookIndex` remembers, per hook, the addons that implement it, and calls only
those, in chain order, with the same error handling: an exception in one addon is
logged and the next addon still runs (so an addon that enforces must deny on its own
failures, as the interceptor does), and ``AddonHalt`` stops the chain.

The index is rebuilt whenever addons are added, removed or cleared. Sub-addons that an
addon changes on its own (mitmproxy's script loader does) would not be seen: the
interceptor's master loads no scripts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager, safecall
from mitmproxy.master import Master

_Hooked = list[list[Callable[..., Any]]]


class HookIndex(AddonManager):
    """An ``AddonManager`` whose async dispatch calls only the addons with the hook."""

    def __init__(self, master: Master) -> None:
        super().__init__(master)
        self._index: dict[str, _Hooked] = {}

    def add(self, *addons: Any) -> None:
        self._index.clear()
        super().add(*addons)

    def remove(self, addon: Any) -> None:
        self._index.clear()
        super().remove(addon)

    def clear(self) -> None:
        self._index.clear()
        super().clear()

    def hooked(self, event: hooks.Hook) -> _Hooked:
        """Per top-level addon that implements ``event``, its callables (sub-addons'
        included), in chain order."""
        found = self._index.get(event.name)
        if found is None:
            found = [
                funcs
                for addon in self.chain
                if (funcs := [func for _, func in self._iter_hooks(addon, event)])
            ]
            self._index[event.name] = found
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        """As ``AddonManager.trigger_event``, skipping addons without the hook."""
        args = event.args()
        for funcs in self.hooked(event):
            try:
                with safecall():
                    for func in funcs:
                        result = func(*args)
                        if result is not None and inspect.isawaitable(result):
                            await result
            except exceptions.AddonHalt:
                return


def use_hook_index(master: Master) -> Master:
    """Give ``master`` a :class:`HookIndex`; call before any addon is added."""
    if len(master.addons):
        raise RuntimeError("the hook index must replace the addon manager before addons")
    master.addons = HookIndex(master)
    return master
