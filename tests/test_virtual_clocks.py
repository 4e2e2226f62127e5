"""The tests' virtual clocks stand still while a worker thread runs, on both backends."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

pytestmark = pytest.mark.anyio


async def test_the_clock_does_not_jump_while_a_thread_works(anyio_backend: Any) -> None:
    # A timer that would end the thread's wait if the clock jumped to it while the thread runs
    # (trio's MockClock did: a SQLite commit let hours of retries go by).
    woke = threading.Event()

    async def timer() -> None:
        await anyio.sleep(3600)
        woke.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(timer)
        await anyio.lowlevel.checkpoint()
        cut_short = await anyio.to_thread.run_sync(woke.wait, 0.05)
        assert not cut_short
        assert anyio.current_time() == 0
        # Once the thread is done, the clock jumps again.
        await anyio.sleep(1)
        assert anyio.current_time() == 1
        tasks.cancel_scope.cancel()
