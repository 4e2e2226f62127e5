"""Many hooks posting at once: one client per hook, each with its own pool or all on one.

For 1, 100, 1,000 and 10,000 hooks, every client posts one message at the same moment to
local nginx. Reported per run: messages delivered and failed, the most sockets open at once
(sampled from /proc/self/fd), and the memory each client adds (traced allocations after the
clients are built, divided by their number). Each configuration runs in a fresh interpreter.

With ``--quota``, no server: each hook's in-memory quota state alone, driven on a virtual clock
through a day of answered requests. A quiet hook (24 requests spread over the day), a busy one
(500,000 a day, its full quota) and 1,000 quiet hooks side by side: the bytes traced per hook
and its buckets, and the CPU per reserve-and-settle pair (medians of 3, without tracing).

    python benchmarks/many_hooks.py                 # starts nginx (benchmarks/_server.py)
    python benchmarks/many_hooks.py --url http://127.0.0.1:PORT --hooks 1 100 1000 10000
    python benchmarks/many_hooks.py --quota
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

SECRET = "aa84c7c4e1422ba3e0d6ea719c876be30808b4917e498149674f9f2b3bdb08c7"
HERE = Path(__file__).parent


def _sockets() -> int:
    count = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    count += 1
    return count


async def _run(url: str, hooks: int, shared: bool, seconds: float) -> dict[str, object]:
    import hookapi  # noqa: PLC0415

    # One client made first, so that lazy imports and caches do not count as per-client memory.
    hookapi.AsyncHookClient(hook_id="warm", secret=SECRET, base_url=f"{url}/hooks")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pool = hookapi.ConnectionPool(max_connections=256) if shared else None
    clients = [
        hookapi.AsyncHookClient(
            hook_id=f"hook-{n}",
            secret=SECRET,
            base_url=f"{url}/hooks",
            transport=pool,
            timeout=seconds,
            retry=hookapi.RetryPolicy.disabled(),
        )
        for n in range(hooks)
    ]
    per_client = (tracemalloc.get_traced_memory()[0] - before) / hooks
    tracemalloc.stop()
    delivered = failed = 0
    most = 0
    errors: dict[str, int] = {}

    async def post(client: hookapi.AsyncHookClient) -> None:
        nonlocal delivered, failed
        try:
            await client.post_message("Deploy finished")
            delivered += 1
        except hookapi.HookAPIError as exc:
            failed += 1
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    async def sample(done: asyncio.Event) -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, _sockets())
            await asyncio.sleep(0.01)

    done = asyncio.Event()
    sampler = asyncio.create_task(sample(done))
    started = time.perf_counter()
    await asyncio.gather(*(post(client) for client in clients))
    elapsed = time.perf_counter() - started
    most = max(most, _sockets())
    done.set()
    await sampler
    for client in clients:
        await client.aclose()
    if pool is not None:
        await pool.aclose()
    return {
        "hooks": hooks,
        "pool": "one shared ConnectionPool (256)" if shared else "one pool per client (32 each)",
        "delivered": delivered,
        "failed": failed,
        "errors": errors,
        "most_sockets": most,
        "bytes_per_client": round(per_client),
        "seconds": round(elapsed, 3),
    }


#: The quota workloads: requests in a day, per hour and per day allowed, and how many hooks.
QUOTA_CASES = {
    "quiet hook, 24 requests in a day": (24, 100, 1000, 1),
    "busy hook, 500,000 in a day (its full quota)": (500_000, 500_000, 500_000, 1),
    "1,000 quiet hooks, 24 requests each in a day": (24, 100, 1000, 1000),
}


def _done(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a store coroutine that never awaits (as every ``HookState`` method is)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the store awaited")


def _quota_day(requests: int, per_hour: int, per_day: int, hooks: int) -> tuple[list[Any], int]:
    """Drive ``hooks`` hook states through one virtual day; the states and the pairs run."""
    from hookapi._quota import HookState, QuotaAnswer, QuotaPolicy, RateLimit  # noqa: PLC0415

    now = [0.0]
    states = [HookState(QuotaPolicy(), clock=lambda: now[0]) for _ in range(hooks)]
    rate = RateLimit(per_hour=per_hour, per_day=per_day, remaining=per_hour)
    answer = QuotaAnswer(status_code=200, rate_limit=rate)
    step = 86400.0 / requests
    pairs = 0
    for _ in range(requests):
        for state in states:
            _done(state.settle(_done(state.reserve()), answer))
            pairs += 1
        now[0] += step
    return states, pairs


def quota_memory() -> list[dict[str, object]]:
    """Bytes per hook (tracemalloc) and CPU per reserve-and-settle pair, per quota workload."""
    rows = []
    for name, (requests, per_hour, per_day, hooks) in QUOTA_CASES.items():
        _quota_day(requests, per_hour, per_day, 1)  # imports and caches off the record
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        states, _pairs = _quota_day(requests, per_hour, per_day, hooks)
        traced = (tracemalloc.get_traced_memory()[0] - before) / hooks
        tracemalloc.stop()
        buckets = sum(state.nbytes() for state in states) / hooks
        del states
        cpu = []
        for _ in range(3):
            started = time.process_time()
            _states, pairs = _quota_day(requests, per_hour, per_day, hooks)
            cpu.append((time.process_time() - started) / pairs * 1e6)
        rows.append(
            {
                "workload": name,
                "bytes_per_hook": round(traced),
                "bucket_bytes_per_hook": round(buckets),
                "us_per_pair_median_of_3": round(statistics.median(cpu), 2),
                "us_per_pair_runs": [round(c, 2) for c in cpu],
            }
        )
    return rows


def _one(args: argparse.Namespace) -> None:
    result = asyncio.run(_run(args.url, args.one, args.shared, args.timeout))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start nginx)")
    parser.add_argument("--hooks", type=int, nargs="*", default=[1, 100, 1000, 10000])
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per post")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shared", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quota", action="store_true", help="each hook's quota state alone")
    args = parser.parse_args()
    if args.quota:
        rows = quota_memory()
        for row in rows:
            print(json.dumps(row), file=sys.stderr)
        print("| workload | bytes per hook | buckets per hook | CPU per reserve + settle |")
        print("| --- | ---: | ---: | ---: |")
        for row in rows:
            print(
                f"| {row['workload']} | {row['bytes_per_hook']:,} "
                f"| {row['bucket_bytes_per_hook']:,} | {row['us_per_pair_median_of_3']} us |"
            )
        return
    if args.one is not None:
        _one(args)
        return
    import resource  # noqa: PLC0415

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the runs below
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            sys.path.insert(0, str(HERE))
            import _server  # noqa: PLC0415

            url = stack.enter_context(_server.nginx())
        rows = []
        for hooks in args.hooks:
            for shared in (False, True):
                command = [sys.executable, __file__, "--url", url, "--one", str(hooks)]
                command += ["--timeout", str(args.timeout)] + (["--shared"] if shared else [])
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout))
                print(json.dumps(rows[-1]), file=sys.stderr)
    print("| hooks | pool | delivered | failed | most sockets | bytes per client | seconds |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        failed = f"{row['failed']} {row['errors']}" if row["failed"] else "0"
        print(
            f"| {row['hooks']:,} | {row['pool']} | {row['delivered']:,} | {failed} "
            f"| {row['most_sockets']:,} | {row['bytes_per_client']:,} | {row['seconds']} |"
        )


if __name__ == "__main__":
    main()
