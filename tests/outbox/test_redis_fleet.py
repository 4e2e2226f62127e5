"""Real processes sharing one hook's outbox through a RedisStore and a real redis-server.

The processes (``fleet_child``) post to the emulator over a loopback socket. Only invariants
that hold at any machine speed are asserted (each message delivered, once or within the
duplicates a kill may cost, in the order Redis accepted them, never refused); the takeover
times after each kill are measured and reported (pytest ``-s`` prints them, ``--junitxml``
records them), with the lease they should stay within.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from hookapi.cli._stage import BackgroundServer
from hookapi.emulator import Emulator

from ..quota.redis_server import RedisServer, redis_server_binary

pytestmark = [pytest.mark.redis, pytest.mark.socket]

ROOT = Path(__file__).resolve().parents[2]
_WAIT = 180.0  # real seconds any run may take before it counts as hung


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        redis_server_binary(), tmp_path_factory.mktemp("redis"), appendfsync="everysec"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


class GoClock:
    """Quota seconds since :meth:`go`, ``scale`` times faster than real time (0 before)."""

    def __init__(self, scale: float) -> None:
        self._scale = scale
        self._origin: float | None = None

    def go(self) -> None:
        self._origin = time.monotonic()

    def __call__(self) -> float:
        return 0.0 if self._origin is None else (time.monotonic() - self._origin) * self._scale


@dataclass
class Child:
    """One ``fleet_child`` process; its standard output is read as it comes."""

    name: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def losses(self) -> int:
        """How many times this process stopped delivering while it lived on (``lost``)."""
        return sum(line == "lost" for line in list(self.lines))

    def acknowledged(self) -> dict[str, int]:
        """Text -> id of every message whose put returned."""
        found = {}
        for line in list(self.lines):
            if line.startswith("put "):
                _, id, text = line.split(" ", 2)
                found[text] = int(id)
        return found


class Fleet:
    def __init__(self, redis_server: RedisServer, url: str, **options: Any) -> None:
        self.options = {
            "url": url,
            "redis": redis_server.url,
            "prefix": f"fleet{uuid.uuid4().hex[:8]}:",
            **options,
        }
        self.children: list[Child] = []

    def spawn(self, name: str, *, ready: bool = True, **options: Any) -> Child:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.outbox.fleet_child",
                json.dumps({**self.options, "name": name, **options}),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        child = Child(name, process)
        ready_event = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                child.lines.append(line.strip())
                if line.strip() == "ready":
                    ready_event.set()
            ready_event.set()

        child.reader = threading.Thread(target=read, daemon=True)
        child.reader.start()
        self.children.append(child)
        if ready:
            assert ready_event.wait(_WAIT), f"{name} never started"
            assert process.poll() is None, self.stderr(child)
        return child

    @staticmethod
    def stderr(child: Child) -> str:
        assert child.process.stderr is not None
        return child.process.stderr.read()[-3000:]

    def finish(self, child: Child) -> None:
        try:
            child.process.wait(_WAIT)
        except subprocess.TimeoutExpired:
            child.process.kill()
            pytest.fail(f"{child.name} did not finish:\n{self.stderr(child)}")
        assert child.reader is not None
        child.reader.join(10)

    def close(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.kill()
            child.process.wait()
            for stream in (child.process.stdin, child.process.stdout, child.process.stderr):
                if stream is not None:
                    stream.close()


def served(emulator: Emulator) -> tuple[BackgroundServer, str]:
    background = BackgroundServer(emulator.app, host="127.0.0.1", port=0)
    return background, background.start().url


def outbox_key(admin: redis.Redis, fleet: Fleet, name: str) -> str:
    """The name of one of the fleet's outbox keys, found from the id counter's."""
    deadline = time.monotonic() + _WAIT
    while not (found := admin.keys(f"{fleet.options['prefix']}*:outbox:seq")):
        assert time.monotonic() < deadline, "the fleet never put a message"
        time.sleep(0.01)
    return str(found[0])[: -len("seq")] + name


# -- three producers, one quota ------------------------------------------------------------

SCALE = 1200.0  # a quota hour in three real seconds, as in the quota's fleet tests
PER_HOUR = 120
PRODUCERS = 3
EACH = 300


def test_three_producers_interleaved_one_queue_in_order_never_refused(
    redis_server: RedisServer, record_property: Any
) -> None:
    clock = GoClock(SCALE)
    emulator = Emulator(per_hour=PER_HOUR, per_day=100 * PER_HOUR, clock=clock)
    hook = emulator.create_hook("Fleet")
    background, base = served(emulator)
    fleet = Fleet(
        redis_server,
        hook.url_for(base),
        scale=SCALE,
        lease=5.0,
        poll=0.01,
        quota="redis",
        count=EACH,
        gap=0.0,
        exit=True,
    )
    try:
        children = [fleet.spawn(f"p{n}") for n in range(PRODUCERS)]
        clock.go()
        for child in children:
            child.send("go")
        for child in children:
            fleet.finish(child)
            assert child.process.returncode == 0, fleet.stderr(child)
    finally:
        fleet.close()
        background.stop()
    accepted: dict[str, int] = {}
    for child in children:
        accepted.update(child.acknowledged())
    assert len(accepted) == PRODUCERS * EACH
    delivered = [m.text for m in sorted(emulator.messages(), key=lambda m: m.received_monotonic)]
    # Every message once, in the order Redis accepted them, and the service refused none.
    assert Counter(delivered) == Counter(accepted.keys())
    ids = [accepted[text] for text in delivered]
    assert ids == sorted(ids)
    assert set(emulator.status_counts) == {200}
    # The producers' puts interleaved in Redis's order (they ran at once).
    by_id = [text.split()[0] for _, text in sorted((i, t) for t, i in accepted.items())]
    switches = sum(1 for a, b in itertools.pairwise(by_id) if a != b)
    hours = (
        max(m.received_monotonic for m in emulator.messages())
        - min(m.received_monotonic for m in emulator.messages())
    ) / 3600
    record_property("fleet_outbox_switches", switches)
    record_property("fleet_outbox_hours", round(hours, 3))
    print(f"\n[fleet outbox] {len(ids)} messages over {hours:.2f} quota hours; {switches} switches")
    assert switches >= PRODUCERS


# -- the deliverer killed again and again --------------------------------------------------

KILLS = 20
PAUSE_EVERY = 5  # every fifth strike pauses the holder (SIGSTOP) past its lease instead
LEASE = 0.4  # real seconds
POLL = 0.01


@pytest.mark.parametrize(
    ("delivery", "concurrency"),
    [("at_least_once", 1), ("at_most_once", 1), ("at_least_once", 3)],
)
def test_the_deliverer_killed_at_random_points_loses_nothing(
    redis_server: RedisServer, delivery: str, concurrency: int, record_property: Any
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    emulator = Emulator(per_hour=10_000_000, per_day=100_000_000)
    # Each answer takes 3 ms: a kill strikes mid-send often, not only between messages.
    emulator.latency = 0.003
    hook = emulator.create_hook("Crash")
    background, base = served(emulator)
    fleet = Fleet(
        redis_server,
        hook.url_for(base),
        lease=LEASE,
        poll=POLL,
        delivery=delivery,
        concurrency=concurrency,
        count=-1,
        gap=0.015,
        wait=False,
    )
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    takeovers: list[float] = []
    left: list[float] = []
    kills = pauses = strikes = 0
    serial = 0
    try:
        producers = [fleet.spawn(f"w{serial + n}") for n in range(3)]
        serial = 3
        owner, live, dead, msgs = (
            outbox_key(admin, fleet, n) for n in ("owner", "live", "dead", "msgs")
        )
        while kills < KILLS:
            # Let some messages through, then strike at a random moment.
            target = len(emulator.messages()) + rng.randint(1, 12)
            deadline = time.monotonic() + _WAIT
            while len(emulator.messages()) < target:
                assert time.monotonic() < deadline, f"stalled (seed {seed})"
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.01))
            holder = admin.get(owner)
            if holder is None:
                continue  # between holders: wait for the next one
            pid = int(str(holder).split("@")[0])
            victim = next((c for c in producers if c.process.pid == pid), None)
            if victim is None:
                continue
            strikes += 1
            if strikes % PAUSE_EVERY == 0:
                # Paused past its lease (a process starved of CPU, or stopped): another takes
                # over, and the paused one, running again, must stop at its next write.
                os.kill(pid, signal.SIGSTOP)
                try:
                    stopped = time.monotonic()
                    while str(admin.get(owner) or pid).split("@")[0] == str(pid):
                        assert time.monotonic() < stopped + _WAIT, f"no takeover (seed {seed})"
                        time.sleep(0.001)
                finally:
                    os.kill(pid, signal.SIGCONT)
                pauses += 1
                continue
            os.kill(pid, signal.SIGKILL)
            struck = time.monotonic()
            left.append(max(0, admin.pttl(owner)) / 1000)  # of the dead holder's lease
            victim.process.wait()
            kills += 1
            producers.remove(victim)
            while True:
                now = admin.get(owner)
                if now is not None and int(str(now).split("@")[0]) != pid:
                    takeovers.append(time.monotonic() - struck)
                    break
                assert time.monotonic() < struck + _WAIT, f"no takeover (seed {seed})"
                time.sleep(0.001)
            # A new process keeps the producers at three, as a supervisor would.
            producers.append(fleet.spawn(f"w{serial}"))
            serial += 1
        for child in producers:
            child.send("stop")
        # Everything acknowledged, by the living and the dead, goes out; then they leave.
        deadline = time.monotonic() + _WAIT
        while admin.zcard(live):
            assert time.monotonic() < deadline, f"the queue never emptied (seed {seed})"
            time.sleep(0.01)
        for child in producers:
            child.send("exit")
        for child in producers:
            fleet.finish(child)
            assert child.process.returncode == 0, fleet.stderr(child)
        letters = {
            json.loads(str(admin.hget(msgs, str(id)) or "{}")).get("t")
            for id in admin.zrange(dead, 0, -1)
        }
    finally:
        fleet.close()
        background.stop()
        admin.close()
    acknowledged: dict[str, int] = {}
    for child in fleet.children:
        acknowledged.update(child.acknowledged())
    # A deliverer paused past its lease (a starved process on a busy machine) is a lost one
    # too, as the docs say: another takes over, and its message in flight may go twice or be
    # reported. The living processes say each time (``lost``); the bounds count them.
    losses = sum(child.losses() for child in fleet.children)
    ended = kills + losses
    delivered = [m.text for m in sorted(emulator.messages(), key=lambda m: m.received_monotonic)]
    counts = Counter(delivered)
    duplicates = sum(n - 1 for n in counts.values())
    missing = set(acknowledged) - set(counts)
    why = (
        f"seed {seed}, {kills} kills, {pauses} pauses, {losses} leases lost, "
        f"{duplicates} duplicates, missing {sorted(missing)}"
    )
    # How long after each kill another process held the lease, and how much of that the
    # dead holder's lease still had to run when it died.
    beyond = sorted(t - r for t, r in zip(takeovers, left, strict=True))
    takeovers.sort()
    record_property("takeover_max", round(takeovers[-1], 4))
    record_property("takeover_p50", round(takeovers[len(takeovers) // 2], 4))
    record_property("takeover_beyond_lease_max", round(beyond[-1], 4))
    record_property("leases_lost", losses)
    print(
        f"\n[crash loop] {delivery} x{concurrency}: {len(acknowledged)} acknowledged, "
        f"{kills} kills, {pauses} pauses, {losses} leases lost, {duplicates} duplicates, "
        f"{len(letters)} unknown; takeover p50 {takeovers[len(takeovers) // 2]:.3f} s, "
        f"max {takeovers[-1]:.3f} s (lease {LEASE} s); "
        f"after the lease ran out: p50 {beyond[len(beyond) // 2]:.3f} s, max {beyond[-1]:.3f} s"
    )
    assert kills >= KILLS
    # Every holder paused past its lease said, once running again, that it stopped delivering.
    assert losses >= pauses > 0, why
    # (A message whose put returned in a process killed before it said so is delivered too.)
    assert all(text.startswith("w") for text in counts), why
    if delivery == "at_least_once":
        assert missing == set(), why
        assert letters == set(), why
        assert duplicates <= ended * concurrency, why
    else:
        assert duplicates == 0, why
        # Only a message caught mid-send may be missing, and it is reported, not lost.
        assert missing <= letters, why
        assert len(letters) <= ended * concurrency, why
    if concurrency == 1:
        # In the order Redis accepted them: a resent message comes again right away. A message
        # reported UNKNOWN is left out: a holder paused mid-send may post it after the next
        # holder's first posts (at_least_once, its late copy is a duplicate, after its first).
        firsts = [
            acknowledged[t]
            for t in dict.fromkeys(delivered)
            if t in acknowledged and t not in letters
        ]
        assert firsts == sorted(firsts), why


# -- Redis killed and restarted, with an append-only file ----------------------------------


def test_redis_killed_and_restarted_with_aof_loses_nothing_acknowledged(
    tmp_path: Path, record_property: Any
) -> None:
    server = RedisServer(redis_server_binary(), tmp_path, appendfsync="always")
    server.start()
    emulator = Emulator(per_hour=10_000_000, per_day=100_000_000)
    emulator.latency = 0.003
    hook = emulator.create_hook("Restart")
    background, base = served(emulator)
    fleet = Fleet(
        server,
        hook.url_for(base),
        lease=LEASE,
        poll=POLL,
        count=-1,
        gap=0.015,
        wait=False,
    )
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        producers = [fleet.spawn(f"w{n}") for n in range(3)]
        live = outbox_key(admin, fleet, "live")

        def delivered_past(count: int) -> None:
            deadline = time.monotonic() + _WAIT
            while len(emulator.messages()) < count:
                assert time.monotonic() < deadline, "stalled"
                time.sleep(0.001)

        delivered_past(50)
        server.kill()  # SIGKILL: no shutdown; only what the append-only file holds survives
        down = len(emulator.messages())
        server.start()
        delivered_past(down + 50)  # the fleet delivers again
        for child in producers:
            child.send("stop")
        deadline = time.monotonic() + _WAIT
        while admin.zcard(live):
            assert time.monotonic() < deadline, "the queue never emptied"
            time.sleep(0.01)
        for child in producers:
            child.send("exit")
        for child in producers:
            fleet.finish(child)
            assert child.process.returncode == 0, fleet.stderr(child)
    finally:
        fleet.close()
        background.stop()
        admin.close()
        server.stop()
    acknowledged: dict[str, int] = {}
    refused = 0
    for child in fleet.children:
        acknowledged.update(child.acknowledged())
        refused += sum(line.startswith("refused ") for line in child.lines)
    # Each time a deliverer stopped (Redis gone, or its lease run out while it was starved of
    # CPU), its message in flight may go again.
    losses = sum(child.losses() for child in fleet.children)
    delivered = [m.text for m in sorted(emulator.messages(), key=lambda m: m.received_monotonic)]
    counts = Counter(delivered)
    duplicates = sum(n - 1 for n in counts.values())
    record_property("restart_refused_puts", refused)
    print(
        f"\n[redis restart] {len(acknowledged)} acknowledged, {refused} puts refused while "
        f"Redis was down, {losses} deliverers stopped, {duplicates} duplicates"
    )
    # Nothing acknowledged is lost; what was in flight when a deliverer stopped went again at
    # most once (concurrency 1).
    assert set(acknowledged) <= set(counts)
    twice = sorted(text for text, n in counts.items() if n > 1)
    assert duplicates <= losses, (
        f"sent again: {twice}; Redis died after {down} deliveries; {losses} stopped"
    )
    # A put cut off by the kill may have reached the file before its answer was lost (the one
    # ambiguity the docs state): it is then delivered, once, though its put raised.
    refused_texts = {
        line.split(" ", 1)[1]
        for c in fleet.children
        for line in c.lines
        if line.startswith("refused ")
    }
    assert set(counts) <= set(acknowledged) | refused_texts
    firsts = [acknowledged[t] for t in dict.fromkeys(delivered) if t in acknowledged]
    assert firsts == sorted(firsts)
