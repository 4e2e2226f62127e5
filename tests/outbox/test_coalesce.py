"""Digests: a backlog is folded into fewer messages, in order, every receipt settled with it."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import httpx
import pytest

from hookapi import (
    AsyncHookClient,
    Coalesce,
    DeadLetter,
    InvalidInputError,
    MemoryStore,
    Outbox,
    Receipt,
    ReceiptState,
    StoredState,
)
from hookapi.emulator import Emulator, Hook
from hookapi.testing import VirtualTimeEventLoop, make_client, scripted_faults

from .conftest import texts

pytestmark = pytest.mark.anyio


def unfolded(emulator: Emulator) -> list[str]:
    """The messages posted, with the default joiner's digests split back into their parts."""
    return [part for text in texts(emulator) for part in text.split("\n\n")]


@pytest.mark.parametrize("emulator", [{"per_hour": 60}], indirect=True)
async def test_a_backlog_arrives_as_a_few_digests_in_order_without_a_refusal(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    sent = [f"deploy step {i} finished" for i in range(300)]
    async with Outbox(client, coalesce=Coalesce(), drain_timeout=math.inf) as outbox:
        receipts = [await outbox.put(text) for text in sent]
        results = [await receipt.wait() for receipt in receipts]
        finished = anyio.current_time()
    assert unfolded(emulator) == sent  # every word, in put order
    assert emulator.status_counts == {200: len(texts(emulator))}  # not one 429
    # Without folding: 300 messages, five hours at 60 an hour.
    assert len(texts(emulator)) <= 6
    assert finished < 600
    assert all(receipt.state is ReceiptState.DELIVERED for receipt in receipts)
    # A folded receipt shares its digest's answer and names the digest's first message.
    heads = {receipt.digest for receipt in receipts} - {None}
    assert heads
    for receipt, result in zip(receipts, results, strict=True):
        if receipt.digest is not None:
            head = next(r for r in receipts if r.id == receipt.digest)
            assert result is head.result


async def test_messages_the_quota_can_take_go_one_by_one(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client, coalesce=Coalesce(burst=3)) as outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(3)]
    assert texts(emulator) == ["m0", "m1", "m2"]
    assert [receipt.digest for receipt in receipts] == [None, None, None]


async def test_a_digest_stays_within_max_bytes(emulator: Emulator, client: AsyncHookClient) -> None:
    coalesce = Coalesce(max_bytes=200, burst=1, interval=10.0)
    sent = [f"line {i:03d} " + "x" * 40 for i in range(40)]
    async with Outbox(client, coalesce=coalesce, drain_timeout=math.inf) as outbox:
        for text in sent:
            await outbox.put(text)
    posted = texts(emulator)
    assert unfolded(emulator) == sent
    body = [json.dumps({"message": t}, ensure_ascii=False, separators=(",", ":")) for t in posted]
    assert max(len(b.encode()) for b in body) <= 200
    assert len(posted) < len(sent)


@pytest.mark.parametrize("emulator", [{"per_hour": 60}], indirect=True)
async def test_the_known_remaining_quota_limits_what_goes_alone(
    emulator: Emulator, hook: Hook, client: AsyncHookClient
) -> None:
    # Someone else spent all but one request of the hour: the backlog waits folded.
    other = make_client(emulator, hook)
    for i in range(59):
        await other.post_message(f"other {i}")
    await client.post_message("learn the headers")
    async with Outbox(client, coalesce=Coalesce(burst=50), drain_timeout=math.inf) as outbox:
        for i in range(10):
            await outbox.put(f"m{i}")
    mine = [t for t in unfolded(emulator) if t.startswith("m")]
    assert mine == [f"m{i}" for i in range(10)]
    assert emulator.status_counts.get(429, 0) == 0
    assert len(texts(emulator)) == 61  # the ten in one digest, after the hour came back


async def test_a_refused_digest_makes_every_message_in_it_a_dead_letter(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    coalesce = Coalesce(burst=1, interval=5.0)
    async with Outbox(client, coalesce=coalesce) as outbox:
        first = await outbox.put("first")
        await first.wait()
        with scripted_faults(emulator, 400):
            receipts = [await outbox.put(f"m{i}") for i in range(4)]
            for receipt in receipts:
                with pytest.raises(Exception, match="400"):
                    await receipt.wait()
    assert [receipt.state for receipt in receipts] == [ReceiptState.FAILED] * 4
    assert [letter.id for letter in outbox.failed()] == [r.id for r in receipts]


async def test_messages_with_a_ttl_are_never_folded(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client, coalesce=Coalesce(burst=1, interval=5.0)) as outbox:
        await outbox.put("a")
        await outbox.put("b", ttl=3600)
        await outbox.put("c")
        await outbox.put("d")
    assert texts(emulator) == ["a", "b", "c\n\nd"]


async def test_a_join_that_breaks_its_contract_sends_the_message_alone(
    emulator: Emulator, client: AsyncHookClient, caplog: pytest.LogCaptureFixture
) -> None:
    def too_big(messages: Sequence[Receipt], max_bytes: int) -> tuple[str, int]:
        return "y" * (max_bytes + 1), len(messages)

    coalesce = Coalesce(burst=1, interval=1.0, join=too_big)
    with caplog.at_level(logging.WARNING, logger="hookapi"):
        async with Outbox(client, coalesce=coalesce) as outbox:
            for text in ("a", "b", "c"):
                await outbox.put(text)
    assert texts(emulator) == ["a", "b", "c"]
    assert "Coalesce.join failed" in caplog.text


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
async def test_the_store_keeps_every_folded_message_until_its_digest_is_posted(
    emulator: Emulator, hook: Hook, delivery: str
) -> None:
    """A crash while a digest is on the wire leaves each message as the delivery mode says."""
    inner = emulator.transport()
    on_wire = anyio.Event()
    release = anyio.Event()

    class Held(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if b"\\n\\n" in await request.aread():
                on_wire.set()
                await release.wait()
            return await inner.handle_async_request(request)

    store = MemoryStore()
    client = make_client(emulator, hook, transport=Held())
    coalesce = Coalesce(burst=1, interval=5.0)
    async with Outbox(client, store=store, coalesce=coalesce, delivery=delivery) as outbox:  # type: ignore[arg-type]
        await (await outbox.put("alone")).wait()
        receipts = [await outbox.put(f"m{i}") for i in range(3)]
        await on_wire.wait()
        rows = await store.open()
        expected = StoredState.SENDING if delivery == "at_most_once" else StoredState.QUEUED
        assert [(row.text, row.state) for row in rows] == [(f"m{i}", expected) for i in range(3)]
        release.set()
    assert await store.open() == []
    assert [receipt.state for receipt in receipts] == [ReceiptState.DELIVERED] * 3


@pytest.mark.parametrize("emulator", [{"per_hour": 60}], indirect=True)
async def test_a_pause_hands_every_folded_message_back_in_order(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    paused = anyio.Event()
    coalesce = Coalesce(burst=1, interval=5.0)
    async with Outbox(client, coalesce=coalesce, on_pause=lambda _: paused.set()) as outbox:
        await (await outbox.put("alone")).wait()
        with scripted_faults(emulator, 401):
            receipts = [await outbox.put(f"m{i}") for i in range(3)]
            await paused.wait()
        assert [r.id for r in outbox.pending] == [r.id for r in receipts]
        assert {r.state for r in receipts} == {ReceiptState.QUEUED}
        outbox.resume()
    assert texts(emulator) == ["alone", "m0\n\nm1\n\nm2"]


@pytest.mark.parametrize(
    "options",
    [{"max_bytes": 0}, {"burst": 0}, {"burst": True}, {"interval": 0}, {"interval": math.inf}],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match="Coalesce"):
        Coalesce(**options)  # type: ignore[arg-type]


async def test_coalesce_must_be_a_coalesce(client: AsyncHookClient) -> None:
    with pytest.raises(InvalidInputError, match="coalesce must be"):
        Outbox(client, coalesce=True)  # type: ignore[arg-type]


CRASHING = """
import sys

import anyio
import httpx

from hookapi import AsyncHookClient, Coalesce, Outbox


class Held(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"\\\\n\\\\n" in await request.aread():
            print("digest on the wire", flush=True)
            await anyio.sleep_forever()
        return httpx.Response(200, text="ok")


async def main() -> None:
    url, path, delivery = sys.argv[1:]
    client = AsyncHookClient.from_url(url, transport=Held())
    coalesce = Coalesce(burst=1, interval=0.05)
    async with Outbox(client, store=path, delivery=delivery, coalesce=coalesce) as outbox:
        await (await outbox.put("alone")).wait()
        for i in range(3):
            await outbox.put(f"m{i}")
        await anyio.sleep_forever()


anyio.run(main)
"""


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
def test_a_crash_mid_digest_leaves_each_message_as_its_delivery_mode_says(
    tmp_path: Path, delivery: str
) -> None:
    """SIGKILL while a digest is on the wire; the next run finds each message on its own."""
    emulator = Emulator()
    hook = emulator.create_hook("Bots")
    path = tmp_path / "outbox.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING, hook.url, str(path), delivery],
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, child.kill)  # a child that never gets there fails the test
    watchdog.start()
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "digest on the wire\n"
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    async def restart() -> list[DeadLetter]:
        client = make_client(emulator, hook)
        async with Outbox(client, store=path, delivery=delivery, coalesce=Coalesce()) as outbox:  # type: ignore[arg-type]
            pass
        return outbox.failed()

    letters = anyio.run(restart, backend_options={"loop_factory": VirtualTimeEventLoop})
    if delivery == "at_least_once":
        assert unfolded(emulator) == ["m0", "m1", "m2"]  # posted again, none lost
        assert letters == []
    else:
        assert texts(emulator) == []  # never posted twice: each one reported unknown
        assert [(letter.text, letter.state) for letter in letters] == [
            (f"m{i}", ReceiptState.UNKNOWN) for i in range(3)
        ]
