"""The outbox's cost: put latency, throughput against a plain loop, memory, and burst time.

Run it with ``python benchmarks/outbox.py`` (``--json`` for machine-readable output). Every
figure but the burst is real time on this machine, against the emulator in process (so that
the server costs the same on both sides of a comparison); the burst runs on trio's
``MockClock``, where hours of quota pass in a fraction of a second.

- put latency: ``await outbox.put(text)`` on a paused outbox (nothing else runs), median and
  99th percentile, with the memory store and with SQLite (a synced commit per put);
- throughput: messages delivered per second by an outbox (memory store, ``concurrency=1``) on
  an unlimited quota, against a plain ``for`` loop of ``post_message`` on the same client;
- memory per queued message, beyond the text itself (``tracemalloc``);
- burst: 500 messages from 20 producers on a 120-per-hour hook, finish time over the ideal.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

import hookapi
from hookapi.emulator import Emulator

HOUR = 3600.0
TEXT = "Deploy of service api finished: 42 tests passed in 3.1 s (build 1234)."


def client_for(emulator: Emulator) -> hookapi.AsyncHookClient:
    hook = emulator.create_hook("Bench")
    return hookapi.AsyncHookClient.from_url(hook.url, transport=emulator.transport())


def unlimited() -> Emulator:
    return Emulator(per_hour=10**9, per_day=10**9)


async def put_latency(store: str, count: int) -> dict[str, Any]:
    client = client_for(unlimited())
    with tempfile.TemporaryDirectory() as folder:
        chosen: hookapi.OutboxStore | str = (
            hookapi.MemoryStore() if store == "memory" else str(Path(folder) / "bench.sqlite")
        )
        samples = []
        async with hookapi.Outbox(client, store=chosen, max_size=count + 1) as outbox:
            outbox.pause()
            for _ in range(count):
                start = time.perf_counter()
                await outbox.put(TEXT)
                samples.append(time.perf_counter() - start)
            await outbox.aclose()
    samples.sort()
    return {
        "store": store,
        "puts": count,
        "median_us": statistics.median(samples) * 1e6,
        "p99_us": samples[int(0.99 * (count - 1))] * 1e6,
    }


async def throughput(count: int, repeats: int) -> dict[str, Any]:
    async def plain() -> float:
        client = client_for(unlimited())
        start = time.perf_counter()
        for _ in range(count):
            await client.post_message(TEXT)
        return count / (time.perf_counter() - start)

    async def outboxed() -> float:
        client = client_for(unlimited())
        start = time.perf_counter()
        async with hookapi.Outbox(client, max_size=count + 1, drain_timeout=math.inf) as box:
            for _ in range(count):
                await box.put(TEXT)
        return count / (time.perf_counter() - start)

    async def yielding() -> float:
        # A producer that lets other tasks run after each put: the sender then wakes up for
        # every message instead of draining a batch.
        client = client_for(unlimited())
        start = time.perf_counter()
        async with hookapi.Outbox(client, max_size=count + 1, drain_timeout=math.inf) as box:
            for _ in range(count):
                await box.put(TEXT)
                await anyio.lowlevel.checkpoint()
        return count / (time.perf_counter() - start)

    loops, boxes, yields = [], [], []
    for _ in range(repeats):  # interleaved, so that drift on a shared machine hits all
        loops.append(await plain())
        boxes.append(await outboxed())
        yields.append(await yielding())
    loop, box = statistics.median(loops), statistics.median(boxes)
    step = statistics.median(yields)
    return {
        "messages": count,
        "plain_per_s": loop,
        "outbox_per_s": box,
        "ratio": box / loop,
        "outbox_yielding_per_s": step,
        "yielding_ratio": step / loop,
    }


async def memory(count: int) -> dict[str, Any]:
    client = client_for(unlimited())
    texts = [f"{TEXT} #{i:06}" for i in range(count)]  # made before measuring: not counted
    text_bytes = sum(sys.getsizeof(text) for text in texts)
    async with hookapi.Outbox(client, max_size=count + 1) as outbox:
        outbox.pause()
        await outbox.put("warm up")
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for text in texts:
            await outbox.put(text)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        await outbox.aclose()
    return {
        "messages": count,
        "bytes_per_message": (after - before) / count,
        "text_bytes_per_message": text_bytes / count,
        "overhead_per_message": (after - before) / count,
    }


def burst(window: str) -> dict[str, Any]:
    from trio.testing import MockClock  # noqa: PLC0415

    async def main() -> dict[str, Any]:
        # Windows in loop seconds, so that a fixed hour starts with the burst, as reckoned.
        emulator = Emulator(
            per_hour=120,
            per_day=10_000,
            window=window,  # type: ignore[arg-type]
            clock=anyio.current_time,
        )
        client = client_for(emulator)
        receipts: list[hookapi.Receipt] = []

        async def producer(n: int) -> None:
            for i in range(25):
                receipts.append(await outbox.put(f"producer {n} message {i}"))

        async with hookapi.Outbox(client, drain_timeout=math.inf) as outbox:
            async with anyio.create_task_group() as producers:
                for n in range(20):
                    producers.start_soon(producer, n)
            for receipt in receipts:
                await receipt.wait()
            finish = anyio.current_time()
        ideal = (math.ceil(500 / 120) - 1) * HOUR
        in_order = [m.text for m in emulator.messages()] == [
            r.text for r in sorted(receipts, key=lambda r: r.id)
        ]
        return {
            "window": window,
            "delivered": len(emulator.messages()),
            "refused": emulator.status_counts.get(429, 0),
            "in_order": in_order,
            "finish_s": finish,
            "ideal_s": ideal,
            "ratio": finish / ideal,
        }

    return anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer messages, one repeat")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    n = 500 if args.quick else 3000
    results: dict[str, Any] = {
        "put": [
            anyio.run(put_latency, "memory", n),
            anyio.run(put_latency, "sqlite", n // 5),
        ],
        "throughput": anyio.run(throughput, n, 1 if args.quick else 5),
        "memory": anyio.run(memory, 10_000),
        "burst": [burst("fixed"), burst("sliding")],
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for put in results["put"]:
        print(
            f"put latency, {put['store']} store: median {put['median_us']:.1f} us, "
            f"p99 {put['p99_us']:.1f} us ({put['puts']} puts)"
        )
    t = results["throughput"]
    print(
        f"throughput, unlimited quota: outbox {t['outbox_per_s']:,.0f} msg/s, plain loop "
        f"{t['plain_per_s']:,.0f} msg/s: {t['ratio']:.2f}x (goal >= 0.8x); with a producer "
        f"yielding after each put {t['outbox_yielding_per_s']:,.0f} msg/s: "
        f"{t['yielding_ratio']:.2f}x"
    )
    m = results["memory"]
    print(
        f"memory per queued message: {m['overhead_per_message']:.0f} bytes beyond the text "
        f"(the text object: {m['text_bytes_per_message']:.0f} bytes; goal < 1024)"
    )
    for b in results["burst"]:
        print(
            f"burst, {b['window']} window: {b['delivered']} delivered, {b['refused']} refused, "
            f"in order: {b['in_order']}, {b['finish_s']:,.0f} s vs ideal {b['ideal_s']:,.0f} s "
            f"= {b['ratio']:.4f}x (goal <= 1.02x)"
        )


if __name__ == "__main__":
    main()
