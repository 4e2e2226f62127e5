"""The tests' virtual clocks stand still while a worker thread runs, on both backends."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from hookapi.testing import VirtualTimeEventLoop

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


@pytest.mark.parametrize("days", [0, 200, 10_000, 100_000_000])
def test_timers_fire_however_far_the_virtual_clock_has_gone(days: int) -> None:
    # The clock jumps to a timer's very time; past 194 days, asyncio's "now + 1 ns" rounded to
    # "now", the timer never ran and the loop spun for ever (a log handler's close hung).
    loop = VirtualTimeEventLoop()
    loop.advance(days * 86400.0)
    start = loop.time()
    woke: list[float] = []

    async def main() -> None:
        await asyncio.sleep(30)
        woke.append(loop.time())
        await asyncio.sleep(0.25)
        woke.append(loop.time())
        loop.call_at(loop.time(), lambda: woke.append(loop.time()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    # A loop that spins is stopped by the thread below, not waited on for ever.
    runner = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    runner.start()
    runner.join(60)
    stuck = runner.is_alive()
    if stuck:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(60)
    loop.close()
    assert not stuck, f"the loop spun at {loop.time()} s"
    assert len(woke) == 3
    assert woke[0] == pytest.approx(start + 30, abs=1e-6)
    assert woke[1] == pytest.approx(start + 30.25, abs=1e-6)
    assert woke[2] == pytest.approx(woke[1], abs=1e-6)
