"""Throttling end to end: 600 messages from 60 tasks against a small quota meet no 429.

Client and emulator share the virtual clock, so the five-odd hours the quota imposes pass in
well under a second. Each run prints its completion time against the ideal schedule (run
with ``-s`` to see them) and records them as test properties.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
import pytest

from hookapi import HookAPIError, RetryPolicy
from hookapi.emulator import Emulator, Window
from hookapi.testing import assert_posted, make_client

from ..e2e.conftest import everything_said

pytestmark = pytest.mark.anyio

HOUR = 3600.0
DAY = 86400.0
MESSAGES, TASKS, PER_HOUR, PER_DAY = 600, 60, 100, 10_000


def ideal_completion(window: Window, start: float) -> float:
    """Seconds from ``start`` until the last message could be posted at the earliest.

    A full hour's quota goes at once; after that, a sliding window gives the next batch back
    an hour after the first, and a fixed window at the next clock hour.
    """
    batches = math.ceil(MESSAGES / PER_HOUR)
    if window == "sliding" or batches == 1:
        return (batches - 1) * HOUR
    first_boundary = (math.floor(start / HOUR) + 1) * HOUR
    return (first_boundary - start) + (batches - 2) * HOUR


@pytest.mark.parametrize(
    ("window", "start"),
    [("fixed", 0.0), ("sliding", 0.0), ("fixed", 1800.0), ("sliding", 1800.0)],
    ids=["fixed-on-the-hour", "sliding", "fixed-mid-hour", "sliding-mid-hour"],
)
async def test_600_messages_from_60_tasks_meet_no_429(
    window: Window,
    start: float,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable[[str, object], None],
    anyio_backend_name: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    await anyio.sleep(start)
    # Windows in loop seconds (hours at multiples of 3600 of it), as the ideal reckons them.
    emulator = Emulator(per_hour=PER_HOUR, per_day=PER_DAY, window=window, clock=anyio.current_time)
    hook = emulator.create_hook("Throttle")
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.1, deadline=2 * DAY)
    client = make_client(emulator, hook, retry=policy)
    failures: list[HookAPIError] = []
    texts = [f"task {task} message {n}" for task in range(TASKS) for n in range(10)]

    async def post_ten(task: int) -> None:
        for text in texts[task * 10 : task * 10 + 10]:
            try:
                await client.post_message(text)
            except HookAPIError as exc:
                failures.append(exc)

    started = anyio.current_time()
    with anyio.fail_after(2 * DAY):
        async with client, anyio.create_task_group() as tasks:
            for task in range(TASKS):
                tasks.start_soon(post_ten, task)
    elapsed = anyio.current_time() - started
    last = max(message.received_monotonic for message in emulator.messages(hook)) - started
    ideal = ideal_completion(window, start)
    refusals = emulator.status_counts.get(429, 0)
    print(
        f"\n[throttle] {anyio_backend_name} window={window} start={start:.0f}s: "
        f"{MESSAGES} messages, {TASKS} tasks, per_hour={PER_HOUR}: 429s={refusals}, "
        f"client errors={len(failures)}, last message at {last:.1f}s, run {elapsed:.1f}s, "
        f"ideal {ideal:.1f}s (+{last - ideal:.1f}s, {last / ideal:.4f}x)"
    )
    record_property("throttle_429s", refusals)
    record_property("throttle_last_message_s", round(last, 3))
    record_property("throttle_ideal_s", ideal)

    assert failures == []
    assert emulator.status_counts == {200: MESSAGES}
    assert_posted(emulator, hook, texts, ordered=False)
    # The quota was never exceeded, even for a moment, in either window.
    times = sorted(message.received_monotonic for message in emulator.messages(hook))
    for index, t in enumerate(times):
        if window == "sliding":
            assert sum(1 for u in times[: index + 1] if u > t - HOUR) <= PER_HOUR
        else:
            assert sum(1 for u in times[: index + 1] if u // HOUR == t // HOUR) <= PER_HOUR
    assert last >= ideal
    said = everything_said(caplog.records, client, hook, emulator, *failures)
    assert hook.secret not in said
