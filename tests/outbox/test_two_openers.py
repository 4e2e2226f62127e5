"""Two processes on one SQLite file: the second opener is refused, so nothing is sent twice.

Real processes, a real socket: the emulator serves in this process, and ``crash_child.py``
forks outbox runs on the same file from two parents at once (two workers given one file),
some of them killed with SIGKILL mid-delivery. Only one run holds the file at a time; the
other is refused with :class:`~hookapi.StoreInUseError` and tries again.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from hookapi import SQLiteStore
from hookapi.emulator import Emulator

from .crash_child import IN_USE
from .test_crash import CHILD, Forker

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

MESSAGES = 40


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Real clocks: the processes talk over a real socket."""
    return request.param


async def test_another_process_is_refused_while_an_outbox_holds_the_file(
    tmp_path: Path, anyio_backend: str
) -> None:
    emulator = Emulator()
    hook = emulator.create_hook("Ops")
    path = tmp_path / "outbox.sqlite"
    code = textwrap.dedent(
        """
        import sys, anyio, hookapi
        try:
            anyio.run(hookapi.SQLiteStore(sys.argv[1]).open)
        except hookapi.StoreInUseError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    store = SQLiteStore(path)
    await store.open()
    await store.add("held", expires_at=None)
    refused = await anyio.run_process([sys.executable, "-c", code, str(path)], check=False)
    await store.aclose()
    opened = await anyio.run_process([sys.executable, "-c", code, str(path)], check=False)
    assert refused.returncode == IN_USE, refused.stderr.decode()
    said = refused.stdout.decode()
    assert f"The outbox file {str(path)!r} is open in another outbox" in said
    assert hook.secret not in said
    assert opened.returncode == 0, opened.stderr.decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """What a run of two openers did to ``MESSAGES`` stored messages."""

    lost: int  # neither posted nor reported unknown
    duplicated: int  # posts beyond the first of a message
    unknown: int  # reported as maybe-posted dead letters (at_most_once)
    kills: int
    refused: int  # runs refused because the other parent's run had the file


async def two_openers(path: Path, *, delivery: str, kills: int, backend: str, seed: int) -> Tally:
    """Two parents run outboxes on one file until all is delivered, killing some runs."""
    rng = random.Random(seed)
    emulator = Emulator(per_hour=100_000, per_day=1_000_000)
    hook = emulator.create_hook("Crash")
    store = SQLiteStore(path)
    await store.open()
    for i in range(MESSAGES):
        await store.add(f"m{i:03}", expires_at=None)
    await store.aclose()
    killed = refused = 0
    async with (
        emulator.serve() as server,
        await anyio.open_process([sys.executable, str(CHILD)], stderr=None) as one,
        await anyio.open_process([sys.executable, str(CHILD)], stderr=None) as two,
    ):
        options = {
            "url": hook.url_for(server.url),
            "path": str(path),
            "delivery": delivery,
            "concurrency": 1,
            "backend": backend,
        }
        done = [False, False]

        async def parent(index: int, forker: Forker) -> None:
            nonlocal killed, refused
            while not done[index]:
                pid = await forker.start(options)
                if killed < kills:
                    await anyio.sleep(rng.uniform(0.005, 0.05))
                    with contextlib.suppress(ProcessLookupError):  # it may have just ended
                        os.kill(pid, signal.SIGKILL)
                status = await forker.status()
                if os.WIFSIGNALED(status):
                    killed += 1
                elif os.WEXITSTATUS(status) == IN_USE:
                    refused += 1
                    await anyio.sleep(0.01)
                else:
                    assert os.WEXITSTATUS(status) == 0, "a run failed (see its traceback)"
                    done[index] = True

        with anyio.fail_after(120):
            async with anyio.create_task_group() as parents:
                parents.start_soon(parent, 0, Forker(one))
                parents.start_soon(parent, 1, Forker(two))
        for process in (one, two):
            await process.stdin.aclose()  # type: ignore[union-attr]
    counts = Counter(int(message.text[1:]) for message in emulator.messages())
    with sqlite3.connect(path) as db:
        left = db.execute("SELECT text, state FROM hookapi_outbox").fetchall()
    db.close()
    unknown = {int(text[1:]) for text, state in left if state == "unknown"}
    return Tally(
        lost=len(set(range(MESSAGES)) - set(counts) - unknown),
        duplicated=sum(n - 1 for n in counts.values()),
        unknown=len(unknown),
        kills=killed,
        refused=refused,
    )


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
async def test_two_processes_on_one_file_send_nothing_twice_but_what_a_kill_cuts(
    tmp_path: Path, anyio_backend: str, delivery: str
) -> None:
    seed = random.randrange(2**32)
    tally = await two_openers(
        tmp_path / "outbox.sqlite", delivery=delivery, kills=4, backend=anyio_backend, seed=seed
    )
    why = f"seed {seed}: {tally}"
    assert tally.lost == 0, why
    if delivery == "at_least_once":
        # Only a run killed mid-send posts a message again; one run sends at a time.
        assert tally.duplicated <= tally.kills, why
        assert tally.unknown == 0, why
    else:
        assert tally.duplicated == 0, why
        assert tally.unknown <= tally.kills, why
