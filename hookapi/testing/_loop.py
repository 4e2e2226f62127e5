"""An asyncio event loop on a virtual clock: hours of pacing pass in milliseconds of real time."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["VirtualTimeEventLoop"]


class _VirtualTimeSelector(selectors.BaseSelector):
    """A selector that, instead of sleeping until the next timer, moves its loop's clock there."""

    def __init__(self, loop: VirtualTimeEventLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout is None or timeout <= 0:
            # Only I/O can wake a loop with no timer: wait for it for real.
            return ready or self._real.select(timeout)
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time: when every task waits, the clock jumps ahead.

    The asyncio counterpart of ``trio.testing.MockClock(autojump_threshold=0)``: a test that
    waits out an hour of quota finishes in milliseconds. The clock starts at 0. Use it for
    in-process tests only: a loop waiting on a real socket would jump past its timeouts.

    Example:
        In a ``conftest.py``, to run anyio tests on it::

            @pytest.fixture
            def anyio_backend():
                return ("asyncio", {"loop_factory": VirtualTimeEventLoop})

        >>> import anyio
        >>> async def an_hour() -> float:
        ...     await anyio.sleep(3600)
        ...     return anyio.current_time()
        >>> anyio.run(an_hour, backend_options={"loop_factory": VirtualTimeEventLoop})
        3600.0
    """

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_VirtualTimeSelector(self))

    def time(self) -> float:
        """The virtual time, in seconds since the loop was made."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead (the loop does this itself whenever it is idle)."""
        self._virtual_now += seconds
