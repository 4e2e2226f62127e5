"""Many hooks posting at once: one client per hook, each with its own pool or all on one.

For 1, 100, 1,000 and 10,000 hooks, every client posts one message at the same moment to
local nginx. Reported per run: messages delivered and failed, the most sockets open at once
(sampled from /proc/self/fd), and the memory each client adds (traced allocations after the
clients are built, divided by their number). Each configuration runs in a fresh interpreter.

    python benchmarks/many_hooks.py                 # starts nginx (benchmarks/_server.py)
    python benchmarks/many_hooks.py --url http://127.0.0.1:PORT --hooks 1 100 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

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
    args = parser.parse_args()
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
