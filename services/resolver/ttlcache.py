"""A bounded in-process cache whose entries carry their own expiry: the memory layer
of the store, and of what the resolver keeps of recent requests."""

from __future__ import annotations

import time
from collections import OrderedDict


class TtlCache[V]:
    """A bounded in-process cache; entries carry their own expiry, checked on read."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str, now: float | None = None) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires_at, value = found
        if expires_at <= (time.time() if now is None else now):
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V, expires_at: float) -> None:
        self._items[key] = (expires_at, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def items(self) -> list[tuple[str, V]]:
        return [(key, value) for key, (_, value) in self._items.items()]

    def purge(self, now: float) -> int:
        stale = [key for key, (expires, _) in self._items.items() if expires <= now]
        for key in stale:
            del self._items[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._items)
