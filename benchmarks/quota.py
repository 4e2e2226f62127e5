"""Quota goodput: many tasks drain a backlog through a small quota, on one virtual clock.

The client and the emulator run in process on trio with a ``MockClock`` that jumps whenever
every task sleeps, so hours of quota windows pass in a fraction of a second. For each window
kind it reports the 429 answers the client provoked and its completion time against the ideal
schedule (the time the last message could go out if the sender knew the quota perfectly).

    python benchmarks/quota.py [--messages 600] [--tasks 60] [--per-hour 100]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

HOUR = 3600.0


def ideal_finish(*, messages: int, per_hour: int, window: str, start: float = 0.0) -> float:
    """When the last message could start at the earliest, knowing the quota and window.

    Fixed windows restart at multiples of an hour of the clock; a sliding window gives a
    request back an hour after it was counted. The daily quota is assumed not to bind.
    """
    batches = math.ceil(messages / per_hour) - 1
    if window == "fixed":
        return start if batches == 0 else (math.floor(start / HOUR) + batches) * HOUR
    return start + batches * HOUR


async def drain(
    *, window: str, messages: int, tasks: int, per_hour: int, phase: float = 0.0
) -> dict[str, Any]:
    """Post ``messages`` from ``tasks`` tasks through one client; return what happened.

    ``phase`` is how far into an hour of the clock the drain starts (fixed windows are aligned
    to the hour, so a drain that starts at 0 gets a whole first window).
    """
    import anyio  # noqa: PLC0415

    import hookapi  # noqa: PLC0415
    from hookapi.emulator import Emulator  # noqa: PLC0415

    emulator = Emulator(per_hour=per_hour, per_day=max(10 * messages, 10_000), window=window)  # type: ignore[arg-type]
    hook = emulator.create_hook("Bench")
    # A backlog is worth waiting hours for: the deadline must outlast the whole drain.
    policy = hookapi.RetryPolicy(deadline=7 * 24 * HOUR, max_retry_after=7 * 24 * HOUR)
    client = hookapi.AsyncHookClient(
        hook_id=hook.id,
        secret=hook.secret,
        base_url=hook.base_url,
        transport=emulator.transport(),
        retry=policy,
        allow_insecure_http=True,
    )
    await anyio.sleep(phase)
    left = messages
    failed = 0
    attempts = 0
    start = anyio.current_time()
    last_sent = start

    async def worker() -> None:
        nonlocal left, failed, attempts, last_sent
        while left > 0:
            left -= 1
            try:
                result = await client.post_message(f"backlog item {left}")
            except hookapi.HookAPIError:
                failed += 1
            else:
                attempts += result.attempts
                last_sent = max(last_sent, anyio.current_time())

    async with client, anyio.create_task_group() as group:
        for _ in range(tasks):
            group.start_soon(worker)
    finish = last_sent - start
    ideal = ideal_finish(messages=messages, per_hour=per_hour, window=window, start=start)
    return {
        "window": window,
        "messages": messages,
        "tasks": tasks,
        "per_hour": per_hour,
        "phase": phase,
        "posted": len(emulator.messages(hook)),
        "failed": failed,
        "attempts": attempts,
        "refused": emulator.status_counts.get(429, 0),
        "finish": finish,
        "ideal": ideal - start,
        "ratio": finish / (ideal - start) if ideal > start else math.nan,
    }


def run(
    *, window: str, messages: int, tasks: int, per_hour: int, phase: float = 0.0
) -> dict[str, Any]:
    """Drain on trio under a ``MockClock`` that autojumps as soon as every task sleeps."""
    import anyio  # noqa: PLC0415
    from trio.testing import MockClock  # noqa: PLC0415

    async def main() -> dict[str, Any]:
        return await drain(
            window=window, messages=messages, tasks=tasks, per_hour=per_hour, phase=phase
        )

    clock = MockClock(autojump_threshold=0)
    return anyio.run(main, backend="trio", backend_options={"clock": clock})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--per-hour", type=int, default=100)
    parser.add_argument("--window", choices=["fixed", "sliding"], action="append")
    parser.add_argument(
        "--phase",
        type=float,
        action="append",
        help="seconds into a clock hour at which the drain starts (repeatable; default 0)",
    )
    args = parser.parse_args(argv)
    results = [
        run(
            window=window,
            messages=args.messages,
            tasks=args.tasks,
            per_hour=args.per_hour,
            phase=phase,
        )
        for phase in args.phase or [0.0]
        for window in args.window or ["fixed", "sliding"]
    ]
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
