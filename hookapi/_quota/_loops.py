"""Which event loop is running: the key under which loop-bound quota state is kept.

anyio's primitives and the clock's readings belong to one event loop. A registry shared by
the whole process must therefore never hand one loop's objects to another (a test suite runs
a fresh loop per test), so everything per-loop is keyed by the object this returns, weakly.
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["current_loop"]


def current_loop() -> object:
    """The running trio run's token, or the running asyncio loop: weakly referenceable.

    Raises:
        RuntimeError: Called outside a running event loop.
    """
    trio = sys.modules.get("trio")  # trio can only be running if it was imported
    if trio is not None:
        in_trio_run = getattr(trio.lowlevel, "in_trio_run", None)  # trio >= 0.27: no raising
        if in_trio_run is None or in_trio_run():
            try:
                return trio.lowlevel.current_trio_token()
            except RuntimeError:
                pass
    loop = asyncio._get_running_loop()
    if loop is None:
        raise RuntimeError("The quota state is used from inside a running event loop.")
    return loop
