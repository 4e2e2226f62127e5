"""What the sync client's thread hop costs: HookClient against AsyncHookClient, per message.

Both post through the emulator in process (no socket), so the difference is the blocking
portal's round trip into the client's own loop thread and back. Also: the same through
HookClient from several threads at once.

    python benchmarks/sync_client.py [--messages N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import anyio

from hookapi import AsyncHookClient, HookClient
from hookapi.emulator import Emulator


def _emulator(messages: int) -> tuple[Emulator, str]:
    emulator = Emulator(per_hour=10 * messages, per_day=10 * messages)
    return emulator, emulator.create_hook().url


def async_run(messages: int) -> float:
    emulator, url = _emulator(messages)

    async def main() -> float:
        async with AsyncHookClient.from_url(url, transport=emulator.transport()) as client:
            started = time.perf_counter()
            for n in range(messages):
                await client.post_message(f"m{n}")
            return time.perf_counter() - started

    return anyio.run(main)


def sync_run(messages: int, threads: int = 1) -> float:
    emulator, url = _emulator(messages)
    with HookClient.from_url(url, transport=emulator.transport()) as client:
        share = messages // threads

        def post() -> None:
            for n in range(share):
                client.post_message(f"m{n}")

        workers = [threading.Thread(target=post) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = {
        "AsyncHookClient, 1 task": lambda: async_run(args.messages),
        "HookClient, 1 thread": lambda: sync_run(args.messages),
        "HookClient, 4 threads": lambda: sync_run(args.messages, threads=4),
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all alike
        for name, run in rows.items():
            times[name].append(run())
    base = statistics.median(times["AsyncHookClient, 1 task"]) / args.messages
    print(f"{args.messages} messages in process, median of {args.repeats} runs")
    for name, runs in times.items():
        per = statistics.median(runs) / args.messages
        print(
            f"  {name:<26} {per * 1e6:8.1f} us/message   {1 / per:8.0f} msg/s   "
            f"+{(per - base) * 1e6:6.1f} us over async"
        )


if __name__ == "__main__":
    main()
