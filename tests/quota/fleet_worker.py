"""One process of a fleet posting through one hook with a RedisQuota, on a sped-up clock.

Run as ``python -m tests.quota.fleet_worker NAME HOOK_URL REDIS_URL PREFIX SCALE COUNT
TASKS``; ``FLEET_POLICY`` in the environment, if set, holds the ``QuotaPolicy`` options as
JSON. It prints ``ready`` once imported, waits for a line on stdin (so that every process
starts together), posts ``COUNT`` messages ``"NAME n"`` from ``TASKS`` tasks, and prints one
JSON line: what it posted and what failed. Its log records go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import anyio

from hookapi import AsyncHookClient, HookAPIError, QuotaPolicy, RedisQuota, RetryPolicy
from hookapi._quota import HookKey
from hookapi.cli._stage import ScaledClock, ScaledTimeLoop

DAY = 86400.0
#: Real seconds a reservation holds its slot without an answer.
LEASE = 2.5


async def run(name: str, hook_url: str, redis_url: str, prefix: str, scale: float) -> None:
    count, tasks = int(sys.argv[6]), int(sys.argv[7])
    posted: list[str] = []
    failed: list[str] = []
    texts = [f"{name} {n}" for n in range(count)]
    # Every duration below is in quota seconds: `scale` of them pass each real second.
    # A reservation's lease outlasts any attempt (0.4 real seconds at most) with room for a
    # process starved of CPU on a busy machine: a lease that ends under a live request counts
    # it as sent, and costs its slot for an hour.
    options = json.loads(os.environ.get("FLEET_POLICY", "{}"))
    quota = RedisQuota(
        redis_url,
        prefix=prefix,
        lease=LEASE * scale,
        policy=QuotaPolicy(**options),
        _time_scale=scale,
    )
    policy = RetryPolicy(
        initial_delay=1.0, max_delay=60.0, max_retry_after=2 * 3600.0, deadline=10 * DAY
    )
    client = AsyncHookClient.from_url(hook_url, quota=quota, retry=policy, timeout=0.4 * scale)

    async def post(task: int) -> None:
        for text in texts[task::tasks]:
            try:
                await client.post_message(text)
            except HookAPIError as exc:
                failed.append(f"{text}: {exc}")
                print(f"FAILED {text}: {exc}", file=sys.stderr, flush=True)
            else:
                posted.append(text)

    async with quota, client:
        # Connect and load the scripts before the start, so that every process starts alike.
        await quota.hook(HookKey(base_url="warm-up", hook_id="warm-up")).budget()
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        async with anyio.create_task_group() as tg:
            for task in range(tasks):
                tg.start_soon(post, task)
    print(json.dumps({"name": name, "posted": posted, "failed": failed}), flush=True)


def main() -> None:
    name, hook_url, redis_url, prefix, scale = sys.argv[1:6]
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    if len(sys.argv) > 8:
        logging.getLogger("hookapi").setLevel(logging.DEBUG)
    clock = ScaledClock(float(scale))
    anyio.run(
        run,
        name,
        hook_url,
        redis_url,
        prefix,
        float(scale),
        backend_options={"loop_factory": lambda: ScaledTimeLoop(clock)},
    )


if __name__ == "__main__":
    main()
