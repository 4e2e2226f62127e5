"""An asyncio event loop on a virtual clock: hours of pacing pass in milliseconds of real time."""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["VirtualTimeEventLoop"]

_T = TypeVar("_T")


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
        if ready or timeout is None or timeout <= 0 or self._loop.in_threads:
            # Only I/O, or a thread the loop waits for (a name lookup, the executor's
            # shutdown), can wake it: wait for real rather than jump past them.
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
    in-process tests only: a loop waiting on a real socket would jump past its timeouts. Work
    the loop hands to a thread (``run_in_executor``, a name lookup, the executor's shutdown)
    stops the clock until it is done.

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
        self._in_threads = 0
        super().__init__(_VirtualTimeSelector(self))

    @property
    def in_threads(self) -> int:
        """How many calls the loop waits for in other threads; while any runs, time stands still."""
        return self._in_threads

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        """As asyncio's, but the clock does not jump while ``func`` runs in its thread.

        A thread's work takes real time (a name lookup does): jumping to the next timer while
        it runs would fire timeouts that real time would not have reached.
        """
        future = super().run_in_executor(executor, func, *args)
        self._in_threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: object) -> None:
        self._in_threads -= 1

    async def shutdown_default_executor(self, *args: Any) -> None:
        """As asyncio's, with the clock standing still while the executor's threads end.

        Python 3.12 and later give up on them after 300 s of the loop's clock, with a warning:
        a virtual clock would get there at once.
        """
        self._in_threads += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self._in_threads -= 1

    def time(self) -> float:
        """The virtual time, in seconds since the loop was made."""
        return self._virtual_now

    @property
    def _clock_resolution(self) -> float:
        # asyncio runs a timer once its time is before "now + resolution". The clock jumps to a
        # timer's very time; past 2**24 s (194 days) of it, adding the real clock's 1 ns to
        # "now" rounds to "now" itself, the timer never ran and the loop spun for ever. The
        # step of the clock's float at its value is always seen.
        return max(1e-9, math.ulp(self._virtual_now))

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:
        pass  # asyncio sets the real clock's resolution: the property above stands instead

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead (the loop does this itself whenever it is idle)."""
        self._virtual_now += seconds
