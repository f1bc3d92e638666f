"""What stands between the pops and the CRM: a bounded cache whose entries
expire, and a breaker that stops asking a CRM that keeps failing. Pure:
the time is passed in (monotonic seconds), no IO.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most `size` entries, each until its own expiry; when full, the
    least recently used entry makes room."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a cache holds at least one entry, not {size}")
        self._size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if now >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, now: float, ttl: float) -> None:
        """Keep `value` for `ttl` seconds (0 or less: not kept)."""
        if ttl <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (now + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class BreakerState(Enum):
    CLOSED = "closed"        # asking
    OPEN = "open"            # not asking until the pause is over
    TRIAL = "trial"          # one request in flight to try it again


class Breaker:
    """Closed while the CRM answers. `failures` failures in a row open it:
    nothing is asked for `pause` seconds, then one request tries again; its
    success closes it, its failure opens it for another pause."""

    def __init__(self, failures: int, pause: float) -> None:
        if failures < 1 or pause <= 0:
            raise ValueError("a breaker needs failures >= 1 and a pause > 0")
        self._failures = failures
        self._pause = pause
        self._in_a_row = 0
        self._open_until = 0.0
        self.state = BreakerState.CLOSED
        self.opened = 0  # times it opened, for metrics

    def allow(self, now: float) -> bool:
        """Whether a request may go now (in OPEN past the pause, this one
        request is the trial)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now >= self._open_until:
            self.state = BreakerState.TRIAL
            return True
        return False

    def succeeded(self) -> None:
        self._in_a_row = 0
        self.state = BreakerState.CLOSED

    def failed(self, now: float) -> None:
        self._in_a_row += 1
        if self.state is BreakerState.TRIAL or (
                self.state is BreakerState.CLOSED and self._in_a_row >= self._failures):
            self.state = BreakerState.OPEN
            self._open_until = now + self._pause
            self.opened += 1
