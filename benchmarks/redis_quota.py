"""What sharing the quota through Redis costs: latency per post, and four processes' throughput.

Starts a throwaway ``redis-server`` on a free loopback port and the emulator on another (quota
far too large to throttle), then measures:

* latency: one task posts ``--posts`` messages one after another through one client, with the
  default in-memory quota and with ``RedisQuota``; p50 and p99 of each ``post_message``;
* throughput: ``--processes`` processes, each posting ``--per-process`` messages from 8 tasks,
  with the in-memory quota (each process alone) and with one ``RedisQuota`` shared by all;
* client CPU per post (``thread_time`` of the posting thread in the latency run, where the
  emulator serves from another thread; ``process_time`` of each fleet process), to tell what
  the client spends from what the shared machine lets it do.

    python benchmarks/redis_quota.py [--posts 2000] [--processes 4] [--per-process 1000]
        [--repeat 1]

With ``--repeat N`` the fleet runs N times each way, interleaved; it reports the medians, each
pair's ratio and the median ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server).")
    port = free_port()
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", directory, "--logfile", "", "--daemonize", "no"),
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


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def latency(hook_url: str, redis_url: str | None, posts: int) -> tuple[list[float], float]:
    import anyio  # noqa: PLC0415

    import hookapi  # noqa: PLC0415

    quota = hookapi.RedisQuota(redis_url, prefix=f"bench{os.getpid()}:") if redis_url else None
    client = hookapi.AsyncHookClient.from_url(hook_url, quota=quota)
    took: list[float] = []
    async with client:
        for n in range(50):  # warm up: the connection, the scripts
            await client.post_message(f"warm-up {n}")
        cpu = time.thread_time()
        for n in range(posts):
            started = time.perf_counter()
            await client.post_message(f"message {n}")
            took.append(time.perf_counter() - started)
        cpu = (time.thread_time() - cpu) / posts
    if quota is not None:
        await quota.aclose()
    await anyio.lowlevel.checkpoint()
    return took, cpu


async def worker(hook_url: str, redis_url: str | None, count: int, tasks: int) -> None:
    import anyio  # noqa: PLC0415

    import hookapi  # noqa: PLC0415

    quota = hookapi.RedisQuota(redis_url, prefix="benchfleet:") if redis_url else None
    client = hookapi.AsyncHookClient.from_url(hook_url, quota=quota)
    async with client:
        for n in range(20):
            await client.post_message(f"warm-up {n}")
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        left = count
        cpu = time.process_time()

        async def post() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.post_message("message")

        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(post)
        print(f"cpu {(time.process_time() - cpu) / count}", flush=True)
    if quota is not None:
        await quota.aclose()


def fleet(hook_url: str, redis_url: str | None, processes: int, count: int) -> tuple[float, float]:
    """Messages per second of ``processes`` processes posting together, and CPU per post."""
    args = [sys.executable, __file__, "--worker", hook_url, redis_url or "-", str(count)]
    procs = [
        subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    cpu: list[float] = []
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        proc.wait()
        elapsed = time.perf_counter() - started
        assert proc.returncode == 0
        assert line[0] == "cpu"
        cpu.append(float(line[1]))
    return processes * count / elapsed, statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--per-process", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="fleet runs of each, interleaved")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()

    import anyio  # noqa: PLC0415

    if options.worker:
        hook_url, redis_url, count = options.worker
        anyio.run(worker, hook_url, None if redis_url == "-" else redis_url, int(count), 8)
        return

    from hookapi.cli._stage import BackgroundServer  # noqa: PLC0415
    from hookapi.emulator import Emulator  # noqa: PLC0415

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        redis, redis_url = start_redis(directory)
        emulator = Emulator(per_hour=10**9, per_day=10**9)
        hook = emulator.create_hook("Bench")
        background = BackgroundServer(emulator.app, host="127.0.0.1", port=0)
        server = background.start()
        hook_url = hook.url_for(server.url)
        try:
            for name, url in (("memory", None), ("redis", redis_url)):
                took, cpu = anyio.run(latency, hook_url, url, options.posts)
                results[f"latency_{name}"] = {
                    "p50_ms": round(1000 * statistics.median(took), 3),
                    "p99_ms": round(1000 * percentile(took, 0.99), 3),
                    "cpu_us_per_post": round(1e6 * cpu, 1),
                }
            # Interleaved, so that what else the machine runs weighs on both alike.
            runs: dict[str, list[tuple[float, float]]] = {"memory": [], "redis": []}
            for _ in range(options.repeat):
                for name, url in (("memory", None), ("redis", redis_url)):
                    runs[name].append(fleet(hook_url, url, options.processes, options.per_process))
            for name, measured in runs.items():
                rates = [rate for rate, _ in measured]
                results[f"fleet_{name}_msgs_per_s"] = round(statistics.median(rates))
                cpu = statistics.median(cpu for _, cpu in measured)
                results[f"fleet_{name}_cpu_us_per_post"] = round(1e6 * cpu, 1)
            results["fleet_ratios"] = [
                round(shared[0] / alone[0], 3)
                for alone, shared in zip(runs["memory"], runs["redis"], strict=True)
            ]
        finally:
            background.stop()
            redis.terminate()
            redis.wait()
    memory, shared = results["latency_memory"], results["latency_redis"]
    results["added_p50_ms"] = round(shared["p50_ms"] - memory["p50_ms"], 3)
    results["added_p99_ms"] = round(shared["p99_ms"] - memory["p99_ms"], 3)
    results["added_cpu_us_per_post"] = round(
        shared["cpu_us_per_post"] - memory["cpu_us_per_post"], 1
    )
    results["fleet_ratio"] = statistics.median(results["fleet_ratios"])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
