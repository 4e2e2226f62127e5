"""An asyncio event loop on virtual time: the twin of trio's ``MockClock(autojump_threshold=0)``.

Whenever the loop would block waiting for a timer, the clock jumps to that timer instead, so
hours of backoff and throttling run in milliseconds. Only for tests without real sockets.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0) or self.loop is None:
            return ready
        if timeout is None:
            return super().select(None)  # no timer pending: only I/O can wake the loop
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` only moves when every task is waiting."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = 0.0

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the loop calls this when it would otherwise block)."""
        self._virtual_now += seconds

    def __repr__(self) -> str:
        return f"<VirtualTimeLoop t={self._virtual_now:.3f}>"


def loop_factory() -> Any:
    return VirtualTimeLoop()
