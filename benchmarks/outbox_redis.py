"""What a shared outbox costs: RedisStore against SQLiteStore, put latency and delivery rate.

Run it with ``python benchmarks/outbox_redis.py`` (``--json`` for the raw figures). It starts
a throwaway ``redis-server`` on loopback for each persistence setting (none, an append-only
file synced every second, synced at every write), and measures, on asyncio against the
emulator in process (an unlimited quota, so that the store is what is measured):

- put latency: ``await outbox.put(text)`` on a paused outbox, median and 99th percentile;
- delivered per second: ``--messages`` put, then drained, by one outbox with
  ``concurrency=1`` (it holds the lease: the figure is one deliverer's rate);

with ``SQLiteStore`` (one synced WAL commit a put) alongside. Medians of ``--repeat`` runs,
interleaved so that drift on a shared machine hits every store alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import anyio

import hookapi
from hookapi.emulator import Emulator

TEXT = "Deploy of service api finished: 42 tests passed in 3.1 s (build 1234)."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_redis(directory: str, fsync: str | None) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server).")
    port = free_port()
    aof = ["--appendonly", "no"] if fsync is None else ["--appendonly", "yes"]
    if fsync is not None:
        aof += ["--appendfsync", fsync]
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *aof),
            *("--dir", directory, "--logfile", "", "--daemonize", "no"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if b"Ready to accept connections" in line:
            break
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, f"redis://127.0.0.1:{port}/0"


def client() -> hookapi.AsyncHookClient:
    emulator = Emulator(per_hour=10**9, per_day=10**9)
    hook = emulator.create_hook("Bench")
    return hookapi.AsyncHookClient.from_url(hook.url, transport=emulator.transport())


def make_store(kind: str, url: str | None, folder: str) -> hookapi.OutboxStore:
    if kind == "sqlite":
        return hookapi.SQLiteStore(Path(folder) / f"{uuid.uuid4().hex}.sqlite")
    assert url is not None
    return hookapi.RedisStore(url, prefix=f"bench{uuid.uuid4().hex[:8]}:")


async def put_latency(kind: str, url: str | None, count: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        samples = []
        store = make_store(kind, url, folder)
        async with hookapi.Outbox(client(), store=store, max_size=count + 1) as outbox:
            outbox.pause()
            for _ in range(count):
                start = time.perf_counter()
                await outbox.put(TEXT)
                samples.append(time.perf_counter() - start)
            await outbox.aclose(drain_timeout=0.001)  # paused: it stops at once
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(0.99 * (count - 1))] * 1e6


async def delivery_rate(kind: str, url: str | None, count: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store = make_store(kind, url, folder)
        outbox = hookapi.Outbox(client(), store=store, max_size=count + 1, drain_timeout=math.inf)
        async with outbox:
            outbox.pause()
            receipts = [await outbox.put(TEXT) for _ in range(count)]
            # The deliverer holds the queue before the clock starts (RedisStore: the lease).
            while not outbox.delivering:  # noqa: ASYNC110
                await anyio.sleep(0.001)
            start = time.perf_counter()
            outbox.resume()
            for receipt in receipts:
                await receipt.wait()
            elapsed = time.perf_counter() - start
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # The paused runs close with messages left in the store, on purpose: no warning for each.
    logging.getLogger("hookapi").setLevel(logging.ERROR)
    settings: list[tuple[str, str | None]] = [
        ("redis, no persistence", None),
        ("redis, AOF everysec", "everysec"),
        ("redis, AOF always", "always"),
    ]
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        servers = []
        urls: dict[str, str | None] = {"sqlite": None}
        try:
            for index, (name, fsync) in enumerate(settings):
                directory = Path(folder) / str(index)
                directory.mkdir()
                process, url = start_redis(str(directory), fsync)
                servers.append(process)
                urls[name] = url
            for _ in range(args.repeat):
                for name, url in urls.items():
                    kind = "sqlite" if name == "sqlite" else "redis"
                    p50, p99 = anyio.run(put_latency, kind, url, args.puts)
                    rate = anyio.run(delivery_rate, kind, url, args.messages)
                    row = results.setdefault(name, {"p50_us": [], "p99_us": [], "per_s": []})
                    row["p50_us"].append(p50)
                    row["p99_us"].append(p99)
                    row["per_s"].append(rate)
        finally:
            for process in servers:
                process.terminate()
                process.wait()
    summary = {
        name: {key: statistics.median(values) for key, values in row.items()}
        for name, row in results.items()
    }
    if args.json:
        print(json.dumps({"runs": results, "medians": summary}, indent=2))
        return
    print(f"{'store':24} {'put p50':>10} {'put p99':>10} {'delivered/s':>12}")
    for name, row in summary.items():
        print(f"{name:24} {row['p50_us']:8.0f}us {row['p99_us']:8.0f}us {row['per_s']:12,.0f}")


if __name__ == "__main__":
    main()
