"""What order posts keep: the order the calls were made, on asyncio and on trio.

Calls that must wait for the quota are admitted in the order ``post_message`` was called
(first come, first served). Which call comes first among tasks started with ``start_soon`` is
the event loop's choice: asyncio runs new tasks in the order they were started, trio in any
order. So the guarantee is about calls, not about ``start_soon``.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from hookapi.emulator import Emulator
from hookapi.testing import make_client

pytestmark = pytest.mark.anyio

COUNT = 30


async def burst(emulator: Emulator) -> list[int]:
    """``COUNT`` tasks post one message each; returns the order their calls were made in."""
    hook = emulator.create_hook("Order")
    client = make_client(emulator, hook)
    called: list[int] = []

    async def post(n: int) -> None:
        called.append(n)  # no checkpoint between this and the call
        await client.post_message(f"m{n}", deadline=math.inf)

    async with anyio.create_task_group() as tg:
        for n in range(COUNT):
            tg.start_soon(post, n)
    return called


@pytest.mark.parametrize("window", ["fixed", "sliding"])
async def test_posts_arrive_in_the_order_the_calls_were_made(window: Any) -> None:
    # 30 messages at 7 an hour: all but the first few wait for the quota, over four hours.
    emulator = Emulator(per_hour=7, per_day=1000, window=window)
    called = await burst(emulator)
    assert sorted(called) == list(range(COUNT))
    assert [m.text for m in emulator.messages()] == [f"m{n}" for n in called]
    assert set(emulator.status_counts) == {200}
    assert anyio.current_time() >= 4 * 3600  # the quota held them back


async def test_start_soon_order_is_the_loops_choice(anyio_backend: Any) -> None:
    emulator = Emulator(per_hour=7, per_day=1000)
    called = await burst(emulator)
    if anyio_backend[0] == "asyncio":
        # asyncio runs new tasks first in, first out: the calls follow start_soon.
        assert called == list(range(COUNT))
    else:
        # trio starts them in any order: only the calls' own order is kept (above).
        assert sorted(called) == list(range(COUNT))
