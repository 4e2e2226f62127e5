"""Quota goodput, and the quota engine's workloads, on one virtual clock.

The client and the emulator run in process on a virtual clock (trio's ``MockClock``, or
``hookapi.testing.VirtualTimeEventLoop`` on asyncio) that jumps whenever every task sleeps, so
hours of quota windows pass in a fraction of a second. By default, for each window kind it
reports the 429 answers the client provoked and its completion time against the ideal
schedule (the time the last message could go out if the sender knew the quota perfectly).

    python benchmarks/quota.py [--messages 600] [--tasks 60] [--per-hour 100]

With ``--engine`` it runs every workload of the quota engine on both backends instead (order,
crowd CPU, random cancellations against the socket emulator in real time, recovery, goodput,
memory) and prints a Markdown table, then the raw figures as JSON:

    python benchmarks/quota.py --engine [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
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

    # Windows in loop seconds (UTC 1970 to the emulator), so that hours start at 0 as reckoned.
    emulator = Emulator(
        per_hour=per_hour,
        per_day=max(10 * messages, 10_000),
        window=window,  # type: ignore[arg-type]
        clock=anyio.current_time,
    )
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


ROOT = Path(__file__).resolve().parent.parent


def _scenarios() -> Any:
    # The workloads live beside the tests that assert their goals.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.quota import scenarios  # noqa: PLC0415

    return scenarios


def on(backend: str, fn: Any, *, virtual: bool = True, **kwargs: Any) -> Any:
    """Run ``fn(**kwargs)`` on ``backend``, on a virtual clock unless told otherwise."""
    import anyio  # noqa: PLC0415

    options: dict[str, Any] = {}
    if virtual and backend == "trio":
        from trio.testing import MockClock  # noqa: PLC0415

        options = {"clock": MockClock(autojump_threshold=0)}
    elif virtual:
        from hookapi.testing import VirtualTimeEventLoop  # noqa: PLC0415

        options = {"loop_factory": VirtualTimeEventLoop}
    return anyio.run(lambda: fn(**kwargs), backend=backend, backend_options=options)


def memory(per_day: int = 500_000) -> dict[str, Any]:
    """The bytes one hook's state holds after a day at ``per_day`` requests (tracemalloc)."""
    import tracemalloc  # noqa: PLC0415

    from hookapi._quota import HookState, QuotaAnswer, QuotaPolicy, RateLimit  # noqa: PLC0415

    def done(coroutine: Any) -> Any:
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value
        raise AssertionError("the store awaited")

    now = [0.0]
    headers = RateLimit(per_hour=per_day, per_day=per_day, remaining=per_day)
    answer = QuotaAnswer(status_code=200, rate_limit=headers)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    state = HookState(QuotaPolicy(), clock=lambda: now[0])
    step = 86400.0 / per_day
    for _ in range(per_day):
        done(state.settle(done(state.reserve()), answer))
        now[0] += step
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"per_day": per_day, "state_bytes": grown, "buckets_bytes": state.nbytes()}


def dev_mode_warnings(backend: str, posts: int) -> list[str]:
    """Run the cancellation storm under ``PYTHONDEVMODE=1 -W error``; return what it printed."""
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        "from tests.quota import scenarios; import anyio; "
        f"anyio.run(lambda: scenarios.cancellations(posts={posts}), backend={backend!r})"
    )
    env = {**os.environ, "PYTHONDEVMODE": "1"}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode:
        lines.append(f"exit status {done.returncode}")
    return lines


def engine(quick: bool) -> dict[str, Any]:
    """Every workload of the quota engine, on both backends."""
    sc = _scenarios()
    backends = ["asyncio", "trio"]
    out: dict[str, Any] = {"order": [], "crowd": [], "cancellation": [], "recovery": []}
    for backend in backends:
        for window in ["fixed", "sliding"]:
            out["order"].append({"backend": backend, **on(backend, sc.order, window=window)})
        messages = 500 if quick else 2000
        for waiters in [1, 50, 500]:
            # Interleaved repeats, median of each: the machine is shared.
            free_us: list[float] = []
            held_us: list[float] = []
            refused = 0
            for _ in range(1 if quick else 3):
                free = on(backend, sc.crowd, waiters=waiters, messages=messages, throttled=False)
                held = on(backend, sc.crowd, waiters=waiters, messages=messages, throttled=True)
                free_us.append(free["cpu_per_message_us"])
                held_us.append(held["cpu_per_message_us"])
                refused += held["refused"]
            out["crowd"].append(
                {
                    "backend": backend,
                    "waiters": waiters,
                    "unthrottled_us": statistics.median(free_us),
                    "throttled_us": statistics.median(held_us),
                    "ratio": statistics.median(held_us) / statistics.median(free_us),
                    "refused": refused,
                    "repeats": {"unthrottled_us": free_us, "throttled_us": held_us},
                }
            )
        posts = 200 if quick else 1000
        storm = on(backend, sc.cancellations, virtual=False, posts=posts)
        storm["dev_mode_output"] = dev_mode_warnings(backend, posts)
        out["cancellation"].append({"backend": backend, **storm})
        for case in "abc":
            out["recovery"].append({"backend": backend, **on(backend, sc.recovery, case=case)})
    out["goodput"] = [
        run(window=window, messages=600, tasks=60, per_hour=100, phase=phase)
        for phase in [0.0, 1800.0]
        for window in ["fixed", "sliding"]
    ]
    out["memory"] = memory()
    return out


def engine_table(out: dict[str, Any]) -> str:
    """The results as the Markdown table of docs/benchmarks.md."""
    rows = ["| workload | backend | measured | goal | |", "| --- | --- | --- | --- | --- |"]

    def row(what: str, backend: str, measured: str, goal: str, ok: bool) -> None:
        verdict = "met" if ok else "**missed**"
        rows.append(f"| {what} | {backend} | {measured} | {goal} | {verdict} |")

    for r in out["order"]:
        row(
            f"order: 100 concurrent posts, 20/hour, {r['window']} window",
            r["backend"],
            f"{r['out_of_order']} pairs out of order, {r['posted']} posted, {r['refused']} refused",
            "0 pairs out of order",
            r["out_of_order"] == 0,
        )
    for r in out["crowd"]:
        row(
            f"crowd: {r['waiters']} waiting, 36,000/hour, 20,000 logged",
            r["backend"],
            f"{r['throttled_us']:.0f} us per throttled message / {r['unthrottled_us']:.0f} us "
            f"unthrottled = {r['ratio']:.2f}x (medians of {len(r['repeats']['throttled_us'])})",
            "<= 2x",
            r["ratio"] <= 2,
        )
    for r in out["cancellation"]:
        warned = r["dev_mode_output"]
        row(
            f"cancellation: {r['posts']:,} posts cancelled at random, socket emulator, "
            f"{r['per_hour']:,}/hour",
            r["backend"],
            f"{r['cancelled']} cancelled, {r['posted']} posted, {r['unanswered']} unanswered; "
            f"client budget "
            f"{r['client_budget_after_storm']:.0f} vs service Remaining "
            f"{r['service_remaining_after_storm']} after the storm, "
            f"{r['client_budget_after_next']:.0f} vs {r['service_remaining_after_next']} after "
            f"one more post; dev mode: {len(warned)} line(s) on stderr",
            "equal (unanswered ones aside), no warning",
            r["client_budget_after_next"] == r["service_remaining_after_next"]
            and abs(r["client_budget_after_storm"] - r["service_remaining_after_storm"])
            <= r["unanswered"]
            and not any("Warning" in line for line in warned),
        )
    names = {
        "a": "(a) fixed window, start 1,800 s in, quota spent",
        "b": "(b) sliding, spent by a burst 30 min earlier",
        "c": "(c) sliding, another client posted every 30 s",
    }
    for r in out["recovery"]:
        row(
            f"recovery {names[r['case']]}: 300 messages, 120/hour",
            r["backend"],
            f"{r['finish']:,.1f} s / {r['ideal']:,.0f} s ideal = {r['ratio']:.4f}x, "
            f"{r['refused']} refused ({r['refused_per_hour']:.1f}/hour), {r['failed']} failed",
            "<= 1.03x, <= 12 refused/hour",
            r["ratio"] <= 1.03 and r["refused_per_hour"] <= 12 and r["failed"] == 0,
        )
    for r in out["goodput"]:
        start = f", starting {r['phase']:,.0f} s into the hour" if r["phase"] else ""
        row(
            f"goodput, {r['window']} window{start} (600 messages, 60 tasks, 100/hour)",
            "trio",
            f"{r['refused']} refused, {r['failed']} failed, {r['finish']:,.0f} s / "
            f"{r['ideal']:,.0f} s ideal = {r['ratio']:.3f}x",
            "0 refused, <= 1.10x",
            r["refused"] == 0 and r["ratio"] <= 1.10,
        )
    m = out["memory"]
    row(
        f"memory: one hook's state after a day at {m['per_day']:,}/day",
        "-",
        f"{m['state_bytes'] / 1024:.1f} KiB (buckets {m['buckets_bytes'] / 1024:.1f} KiB)",
        "< 64 KiB",
        m["state_bytes"] < 64 * 1024,
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", action="store_true", help="run the quota engine's workloads")
    parser.add_argument("--quick", action="store_true", help="smaller engine workloads")
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
    if args.engine:
        out = engine(args.quick)
        print(engine_table(out))
        json.dump(out, sys.stdout)
        print()
        return
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
