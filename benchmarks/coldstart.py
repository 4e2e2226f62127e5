"""Cold start: from interpreter start to the first message answered, ``import`` included.

Each run is a fresh interpreter that imports one client, posts one message to the benchmark
server and exits; the parent times the whole process, from starting ``python`` to its exit,
as ``hookapi send`` or a short-lived job pays it. Runs interleaved, median of N.

    python benchmarks/coldstart.py --url http://127.0.0.1:PORT [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
#: The clients measured: each is a ``loadgen.py`` client posting one message.
CLIENTS = ("hookapi", "aiohttp", "slack_sdk", "httpx", "pyreqwest")

_ONE_POST = """
import asyncio, sys
sys.path.insert(0, {here!r})
from contextlib import AsyncExitStack
import loadgen

async def main():
    async with AsyncExitStack() as stack:
        post = await loadgen.CLIENTS[{client!r}](stack, {url!r})
        await post()

asyncio.run(main())
sys.stdout.flush()
import os
os._exit(0)
"""


def once(client: str, url: str) -> float:
    """Milliseconds from starting the interpreter to its exit after one answered post."""
    code = _ONE_POST.format(here=str(HERE), client=client, url=url)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return (time.perf_counter() - started) * 1000


def median_of(runs: int, url: str, clients: tuple[str, ...] = CLIENTS) -> dict[str, float]:
    """The median cold start of each client in milliseconds, the runs interleaved."""
    times: dict[str, list[float]] = {client: [] for client in clients}
    for _ in range(runs):
        for client in clients:
            times[client].append(once(client, url))
    return {client: statistics.median(values) for client, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the server, as http://127.0.0.1:PORT")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    json.dump(median_of(args.runs, args.url.rstrip("/")), sys.stdout)
    print()


if __name__ == "__main__":
    main()
