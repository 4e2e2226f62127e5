"""The quota engine's workloads, as the issue describes them: shared by the tests and the benchmark.

Each scenario runs inside a running event loop (virtual time unless it says otherwise) against
:mod:`hookapi.emulator` and returns what it measured. The tests assert the goals on them;
``benchmarks/quota.py`` runs them at full size and prints the figures.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import anyio

import hookapi
from hookapi.emulator import Emulator, Window

HOUR = 3600.0
DAY = 86400.0
#: Waits as long as the quota needs: the policy of a backlog drained at the quota's pace.
PATIENT = hookapi.RetryPolicy(deadline=math.inf, max_retry_after=math.inf, max_attempts=20)


def client_for(emulator: Emulator, hook: Any, **options: Any) -> hookapi.AsyncHookClient:
    """A client of ``hook`` through the in-process emulator."""
    options.setdefault("transport", emulator.transport())
    options.setdefault("retry", PATIENT)
    return hookapi.AsyncHookClient(
        hook_id=hook.id,
        secret=hook.secret,
        base_url=hook.base_url,
        allow_insecure_http=True,
        **options,
    )


def inversions(order: list[int]) -> int:
    """Pairs out of order in ``order`` (0 when sorted)."""
    return sum(1 for i, a in enumerate(order) for b in order[i + 1 :] if a > b)


async def order(*, window: Window, posts: int = 100, per_hour: int = 20) -> dict[str, Any]:
    """``posts`` concurrent posts on one client: are they posted in the order they were made?"""
    emulator = Emulator(per_hour=per_hour, per_day=10 * posts, window=window)
    hook = emulator.create_hook("Order")
    called: list[int] = []
    async with client_for(emulator, hook) as client, anyio.create_task_group() as tg:

        async def post(i: int) -> None:
            called.append(i)  # no checkpoint between this and the call joining the queue
            await client.post_message(str(i))

        for i in range(posts):
            tg.start_soon(post, i)
    rank = {i: n for n, i in enumerate(called)}
    received = [rank[int(m.text)] for m in emulator.messages(hook)]
    return {
        "window": window,
        "posts": posts,
        "posted": len(received),
        "out_of_order": inversions(received),
        "refused": emulator.status_counts.get(429, 0),
    }


async def spend(emulator: Emulator, hook: Any, count: int, *, every: float = 0.0) -> None:
    """Another process (a client with a store of its own) posts ``count`` messages."""
    other = client_for(emulator, hook, quota=hookapi.MemoryQuota())
    async with other:
        for i in range(count):
            await other.post_message(f"other {i}")
            if every:
                await anyio.sleep(every)


async def recovery(
    case: str, *, messages: int = 300, per_hour: int = 120, tasks: int = 20
) -> dict[str, Any]:
    """Drain ``messages`` after the quota was spent by someone else; time against the ideal.

    (a) fixed window, the quota spent at 0, the drain starts 1,800 s into the hour;
    (b) sliding window, spent by a burst at 0, the drain starts 1,800 s later;
    (c) sliding window, another client posted every 30 s for the hour before the drain.
    """
    window: Window = "fixed" if case == "a" else "sliding"
    # Windows in loop seconds, so that the drain's start and its ideal are on one timeline.
    emulator = Emulator(
        per_hour=per_hour, per_day=100 * per_hour, window=window, clock=anyio.current_time
    )
    hook = emulator.create_hook("Recovery")
    spacing = HOUR / per_hour
    if case == "c":
        await spend(emulator, hook, per_hour, every=spacing)
    else:
        await spend(emulator, hook, per_hour)
        await anyio.sleep(1800 - anyio.current_time())
    start = anyio.current_time()
    if case == "c":
        # slot k comes back at start + k * spacing; each message reuses one an hour later
        ideal = (messages - 1) * spacing
    else:
        batches = math.ceil(messages / per_hour)
        ideal = (batches * HOUR) - (start % HOUR if window == "fixed" else 1800.0)
    left = list(range(messages))
    failures: list[BaseException] = []
    refused_before = emulator.status_counts.get(429, 0)
    async with client_for(emulator, hook) as client, anyio.create_task_group() as tg:

        async def worker() -> None:
            while left:
                i = left.pop(0)
                try:
                    await client.post_message(f"mine {i}")
                except hookapi.HookAPIError as exc:
                    failures.append(exc)

        for _ in range(tasks):
            tg.start_soon(worker)
    mine = [m.received_monotonic for m in emulator.messages(hook) if m.text.startswith("mine")]
    finish = max(mine) - start
    refused = emulator.status_counts.get(429, 0) - refused_before
    return {
        "case": case,
        "window": window,
        "messages": messages,
        "posted": len(mine),
        "failed": len(failures),
        "finish": finish,
        "ideal": ideal,
        "ratio": finish / ideal,
        "refused": refused,
        "refused_per_hour": refused / max(1.0, finish / HOUR),
    }


async def crowd(*, waiters: int, messages: int, throttled: bool) -> dict[str, Any]:
    """CPU per message when every message waits for a slot (36,000/hour, 20,000 logged).

    The hook allows 36,000 requests an hour and 20,000 a day (sliding). The client first
    posts 20,000 messages at 10 a second, so the day is spent and 20,000 requests are logged;
    then ``waiters`` tasks post ``messages`` more, each waiting for a slot of the day to come
    back. Unthrottled: the same tasks and messages on a fresh hook with room to spare.
    """
    per_day = 20_000
    emulator = Emulator(per_hour=36_000, per_day=per_day if throttled else 10**7, window="sliding")
    hook = emulator.create_hook("Crowd")
    async with client_for(emulator, hook) as client:
        if throttled:
            for i in range(per_day):
                await client.post_message(f"log {i}")
                await anyio.sleep(0.1)
        left = messages

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.post_message("crowd")

        cpu = time.process_time()
        async with anyio.create_task_group() as tg:
            for _ in range(waiters):
                tg.start_soon(worker)
        cpu = time.process_time() - cpu
    return {
        "waiters": waiters,
        "messages": messages,
        "throttled": throttled,
        "cpu_per_message_us": 1e6 * cpu / messages,
        "refused": emulator.status_counts.get(429, 0),
    }


async def cancellations(
    *, posts: int = 1000, per_hour: int | None = None, seed: int = 1
) -> dict[str, Any]:
    """Cancel posts at random points (``move_on_after`` and task-group cancels), in real time.

    Then compare what the client thinks is left with what the service says is left: first as
    the storm leaves it, then after one more post (a trusted answer).
    """
    rng = random.Random(seed)
    # Twice the posts by default, so that the storm alone can never spend the quota.
    per_hour = 2 * posts if per_hour is None else per_hour
    emulator = Emulator(per_hour=per_hour, per_day=100 * per_hour, window="sliding")
    hook = emulator.create_hook("Cancel")
    posted = cancelled = 0
    async with emulator.serve() as server:
        client = hookapi.AsyncHookClient(
            hook_id=hook.id,
            secret=hook.secret,
            base_url=server.url,
            allow_insecure_http=True,
            retry=hookapi.RetryPolicy(deadline=30.0),
        )
        async with client:
            await client.post_message("learn the quota")
            storm_posts = posts

            async def post(i: int, scope_after: float) -> None:
                nonlocal posted, cancelled
                with anyio.move_on_after(scope_after) as scope:
                    try:
                        await client.post_message(f"m{i}")
                        posted += 1
                    except hookapi.RateLimitError:
                        pass
                if scope.cancelled_caught:
                    cancelled += 1

            done = 0
            while done < storm_posts:
                batch = min(50, storm_posts - done)
                async with anyio.create_task_group() as tg:
                    for i in range(done, done + batch):
                        tg.start_soon(
                            post, i, math.inf if rng.random() < 0.05 else rng.uniform(0.0, 0.03)
                        )
                    if rng.random() < 0.3:
                        await anyio.sleep(rng.uniform(0.0, 0.1))
                        tg.cancel_scope.cancel()
                done += batch
            # Requests cancelled after they were written may still be on their way to the
            # service: wait (in real time) until its count stops moving before comparing.
            counts: list[int] = []
            while len(counts) < 5 or len(set(counts[-5:])) > 1:
                counts.append(emulator.quota(hook).used_hour)
                await anyio.sleep(0.02)
            gate = client._transport.gate()
            budget_after_storm = await gate.quota.budget()
            remaining_after_storm = emulator.quota(hook).remaining
            unanswered = getattr(gate.quota, "_lost", 0)
            try:
                await client.post_message("one more", deadline=HOUR / per_hour + 1)
            except hookapi.RateLimitError:
                posted_after = False
            else:
                posted_after = True
            budget_after_next = await gate.quota.budget()
            remaining_after_next = emulator.quota(hook).remaining
    return {
        "posts": posts,
        "per_hour": per_hour,
        "posted": posted,
        "cancelled": cancelled,
        "service_used": emulator.quota(hook).used_hour,
        "unanswered": unanswered,
        "client_budget_after_storm": budget_after_storm,
        "service_remaining_after_storm": remaining_after_storm,
        "client_budget_after_next": budget_after_next,
        "service_remaining_after_next": remaining_after_next,
        "posted_after_storm": posted_after,
    }
