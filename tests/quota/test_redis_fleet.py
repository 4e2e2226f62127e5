"""Four real processes, one hook, one RedisQuota: no 429, the quota held in every window.

How near the ideal time the fleet gets, and how fair the shares are, depends on how fast the
machine runs four processes on a real clock: the tests report those figures (pytest ``-s``
prints them, ``--junitxml`` records them) and docs/benchmarks.md gives the measured ones,
but only invariants that hold at any speed are asserted.

The processes (``fleet_worker``) and the emulator count time on clocks ``SCALE`` times faster
than real time, so a quota hour lasts three real seconds; Redis keeps the quota on the same
scale. The emulator's quota clock starts when every process is told to go, at the start of
one of its hours, so the ideal time is known exactly for both windows.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hookapi.cli._stage import BackgroundServer
from hookapi.emulator import Emulator, Hook, PostedMessage, Window

from .redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.socket]

ROOT = Path(__file__).resolve().parents[2]
SCALE = 1200.0
HOUR = 3600.0
PER_HOUR = 16
PER_PROCESS = 12
PROCESSES = 4
_WAIT = 120.0  # real seconds any run may take before it counts as hung


class GoClock:
    """Quota seconds since :meth:`go`, ``SCALE`` times faster than real time (0 before)."""

    def __init__(self) -> None:
        self._origin: float | None = None

    def go(self) -> None:
        self._origin = time.monotonic()

    def __call__(self) -> float:
        return 0.0 if self._origin is None else (time.monotonic() - self._origin) * SCALE


class Milestones:
    """Wraps the emulator's app: sets an event as each count of messages is reached."""

    def __init__(self, emulator: Emulator, hook: Hook, marks: list[int]) -> None:
        self._app = emulator.app
        self._emulator = emulator
        self._hook = hook
        self.reached = {mark: threading.Event() for mark in marks}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)
        count = len(self._emulator.messages(self._hook))
        for mark, event in self.reached.items():
            if count >= mark:
                event.set()


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[str]
    report: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""

    def finish(self) -> None:
        try:
            out, self.stderr = self.process.communicate(timeout=_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, self.stderr = self.process.communicate()
            pytest.fail(f"{self.name} did not finish:\n{self.stderr[-3000:]}")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.report = json.loads(lines[-1]) if lines else {}


class Fleet:
    """Worker processes posting through one hook, each told when to start."""

    def __init__(self, redis_server: RedisServer, hook_url: str) -> None:
        self.redis_server = redis_server
        self.hook_url = hook_url
        self.prefix = f"fleet{uuid.uuid4().hex[:8]}:"
        self.workers: dict[str, Worker] = {}

    def spawn(self, name: str, count: int) -> Worker:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.quota.fleet_worker",
                name,
                self.hook_url,
                self.redis_server.url,
                self.prefix,
                str(SCALE),
                str(count),
                "2",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        worker = self.workers[name] = Worker(name, process)
        return worker

    @staticmethod
    def go(*workers: Worker) -> None:
        for worker in workers:
            assert worker.process.stdin is not None
            worker.process.stdin.write("go\n")
            worker.process.stdin.flush()

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()
            for stream in (worker.process.stdin, worker.process.stdout, worker.process.stderr):
                if stream is not None:
                    stream.close()


class Stage:
    """The emulator on a clock that starts with the run, served on loopback, and its fleet."""

    def __init__(self, redis_server: RedisServer, window: Window, marks: list[int]) -> None:
        self.clock = GoClock()
        self.emulator = Emulator(
            per_hour=PER_HOUR, per_day=100 * PER_HOUR, window=window, clock=self.clock
        )
        self.hook = self.emulator.create_hook("Fleet")
        self.milestones = Milestones(self.emulator, self.hook, marks)
        self.background = BackgroundServer(self.milestones, host="127.0.0.1", port=0)
        server = self.background.start()
        self.fleet = Fleet(redis_server, self.hook.url_for(server.url))

    def start(self, *workers: Worker) -> None:
        self.clock.go()
        self.fleet.go(*workers)

    def wait_for(self, mark: int) -> None:
        assert self.milestones.reached[mark].wait(_WAIT), f"{mark} messages never arrived"

    def close(self) -> None:
        self.fleet.stop()
        self.background.stop()

    def delivered(self) -> list[PostedMessage]:
        return sorted(self.emulator.messages(self.hook), key=lambda m: m.received_monotonic)


def ideal(messages: int) -> float:
    """The earliest the last message can arrive, from a start at the top of a quota hour."""
    return (math.ceil(messages / PER_HOUR) - 1) * HOUR


def check_the_quota_held(times: list[float], window: Window) -> None:
    for index, t in enumerate(times):
        if window == "sliding":
            assert sum(1 for u in times[: index + 1] if u > t - HOUR) <= PER_HOUR
        else:
            assert sum(1 for u in times[: index + 1] if u // HOUR == t // HOUR) <= PER_HOUR


def check_each_posted_once(messages: list[PostedMessage]) -> None:
    texts = [m.text for m in messages]
    assert len(texts) == len(set(texts))


@pytest.mark.parametrize("window", ["fixed", "sliding"])
def test_four_processes_share_one_quota(
    redis_server: RedisServer, window: Window, record_property: Any
) -> None:
    total = 4 * PER_HOUR
    stage = Stage(redis_server, window, [total])
    try:
        # More than they can post before the run stops: every process competes to the end.
        workers = [stage.fleet.spawn(f"p{n}", 60) for n in range(PROCESSES)]
        stage.start(*workers)
        stage.wait_for(total)
    finally:
        stage.close()
    messages = stage.delivered()
    for worker in workers:
        assert "FAILED" not in worker.stderr, worker.stderr
    assert set(stage.emulator.status_counts) == {200}
    check_each_posted_once(messages)
    times = [m.received_monotonic for m in messages]
    check_the_quota_held(times, window)
    # A fixed window is ideal from the top of its hour; a sliding one from the first message
    # (nothing can go before the processes have started).
    start = 0.0 if window == "fixed" else times[0]
    ratio = (times[total - 1] - start) / ideal(total)
    # Shares once the quota binds: after the first hour's burst, which nobody waited for.
    shares = Counter(m.text.split()[0] for m in messages[PER_HOUR:total])
    record_property("fleet_ratio", round(ratio, 4))
    record_property("fleet_shares", dict(shares))
    print(f"\n[fleet] {window}: message {total} at {ratio:.4f}x the ideal; shares {dict(shares)}")
    # Every process got turns once the quota bound: none was starved.
    assert len(shares) == PROCESSES, shares


def test_a_process_joins_and_one_is_killed_mid_run(
    redis_server: RedisServer, record_property: Any
) -> None:
    count = 12
    stage = Stage(redis_server, "sliding", [PER_HOUR + 4])
    try:
        workers = [stage.fleet.spawn(f"p{n}", count) for n in range(PROCESSES)]
        late = stage.fleet.spawn("late", count)
        stage.start(*workers)
        stage.wait_for(PER_HOUR + 4)
        workers[0].process.send_signal(signal.SIGKILL)
        killed_at = stage.clock()
        stage.fleet.go(late)
        survivors = [*workers[1:], late]
        for worker in survivors:
            worker.finish()
    finally:
        stage.close()
    messages = stage.delivered()
    assert set(stage.emulator.status_counts) == {200}
    check_each_posted_once(messages)
    check_the_quota_held([m.received_monotonic for m in messages], "sliding")
    for worker in survivors:
        assert worker.report["failed"] == [], worker.stderr
        assert sorted(worker.report["posted"]) == sorted(f"{worker.name} {n}" for n in range(count))
    # The survivors went on without the dead process (how soon is the reported ratio).
    done = len(messages)
    last = messages[-1].received_monotonic
    record_property("fleet_kill_ratio", round(last / ideal(done), 4))
    print(f"\n[fleet] kill+join: {done} messages, last at {last / ideal(done):.4f}x the ideal")
    assert any(m.text.startswith("p1 ") and m.received_monotonic > killed_at for m in messages)


def test_redis_stopped_and_restarted_mid_run(own_redis_server: RedisServer) -> None:
    count = 12
    stage = Stage(own_redis_server, "sliding", [PER_HOUR // 2, PER_HOUR + 4])
    try:
        workers = [stage.fleet.spawn(f"p{n}", count) for n in range(PROCESSES)]
        stage.start(*workers)
        stage.wait_for(PER_HOUR // 2)
        own_redis_server.stop()
        stage.wait_for(PER_HOUR + 4)
        own_redis_server.start()
        for worker in workers:
            worker.finish()
    finally:
        stage.close()
    messages = stage.delivered()
    # Nothing lost, nothing twice; while Redis was away each process paced alone, so the
    # service may have refused some requests: they were sent again.
    check_each_posted_once(messages)
    assert sorted(m.text for m in messages) == sorted(
        f"p{n} {k}" for n in range(PROCESSES) for k in range(count)
    )
    back = 0
    for worker in workers:
        assert worker.report["failed"] == [], worker.stderr
        said = worker.stderr.splitlines()
        assert sum("is unavailable" in line for line in said) == 1, worker.stderr
        # One WARNING when Redis is back, if the process still had something to post then.
        shared_again = sum("the quota is shared again" in line for line in said)
        assert shared_again <= 1, worker.stderr
        back += shared_again
    assert back >= 1
