"""Accepting and closing: input checks, a full outbox, ttl, aclose, and cancellation."""

from __future__ import annotations

import gc
import logging
import math
from pathlib import Path

import anyio
import pytest

from hookapi import (
    AsyncHookClient,
    InvalidInputError,
    MemoryStore,
    MessageDroppedError,
    Outbox,
    OutboxClosedError,
    OutboxFullError,
    Receipt,
    ReceiptState,
    SQLiteStore,
)
from hookapi.emulator import Emulator

from .conftest import texts

pytestmark = pytest.mark.anyio

HOUR = 3600.0
ONE_PER_HOUR = pytest.mark.parametrize("emulator", [{"per_hour": 1}], indirect=True)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_size": 0}, "max_size must be at least 1"),
        ({"max_size": 2.5}, "max_size must be an int"),
        ({"concurrency": True}, "concurrency must be an int"),
        ({"on_full": "block"}, "on_full must be"),
        ({"delivery": "exactly_once"}, "delivery must be"),
        ({"drain_timeout": -1}, "drain_timeout must be more than 0"),
        ({"store": 42}, "store must be an OutboxStore or a path"),
        ({"on_pause": "print"}, "on_pause must be callable"),
    ],
)
def test_bad_options_are_refused(
    client: AsyncHookClient, options: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        Outbox(client, **options)  # type: ignore[arg-type]


def test_the_client_must_be_a_client() -> None:
    with pytest.raises(InvalidInputError, match="client must be an AsyncHookClient"):
        Outbox("https://example.test")  # type: ignore[arg-type]


async def test_bad_messages_are_refused_before_anything_is_queued(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client) as outbox:
        for text in ["", "   ", 42, "\ud800"]:
            with pytest.raises(InvalidInputError):
                await outbox.put(text)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="ttl"):
            await outbox.put("hi", ttl=0)
        assert outbox.pending == []
    assert texts(emulator) == []


async def test_put_needs_a_running_outbox(client: AsyncHookClient) -> None:
    outbox = Outbox(client)
    with pytest.raises(OutboxClosedError, match="not started"):
        await outbox.put("early")
    assert await outbox.aclose() == []
    async with outbox:
        pass
    with pytest.raises(OutboxClosedError, match="is closed"):
        await outbox.put("late")
    with pytest.raises(OutboxClosedError, match="already run"):
        async with outbox:
            pass


@ONE_PER_HOUR
async def test_on_full_wait_holds_the_producer_until_there_is_room(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client, max_size=2, drain_timeout=math.inf) as outbox:
        first = await outbox.put("a")
        await first.wait()
        await outbox.put("b")  # waits an hour for the quota
        await outbox.put("c")
        assert anyio.current_time() < 1
        await outbox.put("d")  # no room until "b" is delivered
        assert anyio.current_time() >= HOUR
    assert texts(emulator) == ["a", "b", "c", "d"]


@ONE_PER_HOUR
async def test_on_full_raise(emulator: Emulator, client: AsyncHookClient) -> None:
    async with Outbox(client, max_size=2, on_full="raise", drain_timeout=math.inf) as outbox:
        await (await outbox.put("a")).wait()
        await outbox.put("b")
        await outbox.put("c")
        with pytest.raises(OutboxFullError, match="holds 2 messages"):
            await outbox.put("d")
    assert texts(emulator) == ["a", "b", "c"]


@ONE_PER_HOUR
async def test_on_full_drop_oldest_drops_the_oldest_queued_message(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client, max_size=2, on_full="drop_oldest", drain_timeout=math.inf) as box:
        first = await box.put("a")
        await first.wait()
        second = await box.put("b")  # being sent: waits for the quota
        third = await box.put("c")
        await anyio.sleep(1)
        fourth = await box.put("d")  # room is made by dropping "c", the oldest still queued
        with pytest.raises(MessageDroppedError, match="drop_oldest"):
            await third.wait()
    assert third.state is ReceiptState.DROPPED
    assert (second.state, fourth.state) == (ReceiptState.DELIVERED, ReceiptState.DELIVERED)
    assert texts(emulator) == ["a", "b", "d"]


@ONE_PER_HOUR
async def test_a_ttl_drops_a_message_the_quota_cannot_reach_in_time(
    emulator: Emulator, client: AsyncHookClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    async with Outbox(client, drain_timeout=math.inf) as outbox:
        first = await outbox.put("now")
        late = await outbox.put("in a minute or never", ttl=60)
        kept = await outbox.put("whenever")
        await first.wait()
        with pytest.raises(MessageDroppedError, match="ttl"):
            await late.wait()
        assert anyio.current_time() < 60  # dropped as soon as the quota said so
        await kept.wait()
    assert late.state is ReceiptState.DROPPED
    assert texts(emulator) == ["now", "whenever"]
    assert any("dropped" in r.getMessage() for r in caplog.records)


@ONE_PER_HOUR
async def test_a_ttl_that_passes_while_queued_drops_it_at_its_turn(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client, drain_timeout=math.inf) as outbox:
        await outbox.put("a")
        await outbox.put("b")  # waits an hour
        late = await outbox.put("c", ttl=600)
        with pytest.raises(MessageDroppedError):
            await late.wait()
        assert anyio.current_time() >= HOUR
    assert texts(emulator) == ["a", "b"]


@ONE_PER_HOUR
async def test_aclose_returns_what_it_could_not_deliver_in_time(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    outbox = Outbox(client, drain_timeout=10)
    async with outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(4)]
    left = await outbox.aclose()
    assert left == receipts[1:]
    assert await outbox.aclose() == left  # again: nothing more
    assert outbox.closed
    assert receipts[0].state is ReceiptState.DELIVERED
    for receipt in left:
        assert receipt.state is ReceiptState.QUEUED
        with pytest.raises(OutboxClosedError, match="closed before this message"):
            await receipt.wait()
    assert texts(emulator) == ["m0"]


@ONE_PER_HOUR
async def test_aclose_with_an_infinite_timeout_delivers_everything(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client) as outbox:
        for i in range(3):
            await outbox.put(f"m{i}")
        assert await outbox.aclose(drain_timeout=math.inf) == []
        with pytest.raises(OutboxClosedError):
            await outbox.put("late")
    assert texts(emulator) == ["m0", "m1", "m2"]
    assert anyio.current_time() >= 2 * HOUR


@ONE_PER_HOUR
async def test_cancelling_the_surrounding_scope_stops_it_cleanly(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    store = MemoryStore()
    with anyio.move_on_after(HOUR / 2) as scope:
        async with Outbox(client, store=store) as outbox:
            receipts = [await outbox.put(f"m{i}") for i in range(3)]
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert outbox.closed
    assert [r.state for r in receipts] == [ReceiptState.DELIVERED, *[ReceiptState.QUEUED] * 2]
    gc.collect()  # a task left behind would warn here, and warnings are errors
    # The store still holds the rest: a new outbox on it delivers them, in order.
    async with Outbox(client, store=store, drain_timeout=math.inf) as again:
        assert [r.text for r in again.pending] == ["m1", "m2"]
    assert texts(emulator) == ["m0", "m1", "m2"]


@ONE_PER_HOUR
async def test_cancelled_mid_send_under_at_most_once_is_unknown(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    with anyio.move_on_after(HOUR / 2):
        async with Outbox(client, delivery="at_most_once") as outbox:
            await outbox.put("m0")
            second = await outbox.put("m1")  # being sent (waiting for quota) when cancelled
            third = await outbox.put("m2")
            await anyio.sleep_forever()
    assert second.state is ReceiptState.UNKNOWN
    assert third.state is ReceiptState.QUEUED
    assert [d.id for d in outbox.failed()] == [second.id]


@pytest.mark.parametrize("emulator", [{"per_hour": 2}], indirect=True)
async def test_a_surrounding_cancellation_loses_nothing_with_sqlite(
    emulator: Emulator, client: AsyncHookClient, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite"
    with anyio.CancelScope() as scope:
        async with Outbox(client, store=str(path)) as outbox:
            receipts = [await outbox.put(f"m{i}") for i in range(5)]
            await receipts[1].wait()
            scope.cancel()
            await anyio.sleep_forever()
    before = texts(emulator)
    assert before[:2] == ["m0", "m1"]
    # The commits ran in threads, which a virtual clock does not wait for: how far the sender
    # got is not fixed, but whatever was not confirmed is still stored, in order.
    async with Outbox(client, store=SQLiteStore(path), drain_timeout=math.inf) as again:
        resumed = [r.text for r in again.pending]
        assert resumed == [f"m{i}" for i in range(5 - len(resumed), 5)]
    after = texts(emulator)
    assert after[: len(before)] == before
    assert list(dict.fromkeys(after)) == [f"m{i}" for i in range(5)]
    assert len(after) - 5 <= 1  # at least once: at most the one in flight is posted twice


@ONE_PER_HOUR
async def test_two_tasks_closing_at_once_get_the_same_answer(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    answers: list[list[Receipt]] = []

    async def close(outbox: Outbox) -> None:
        answers.append(await outbox.aclose(drain_timeout=60))

    async with Outbox(client) as outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(3)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(close, outbox)
            tg.start_soon(close, outbox)
    assert answers == [receipts[1:], receipts[1:]]


class SlowStore(MemoryStore):
    """A store whose commit of a new message takes as long as the test says (a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.adding = anyio.Event()
        self.release = anyio.Event()

    async def add(self, text: str, *, expires_at: float | None) -> int:
        self.adding.set()
        await self.release.wait()
        return await super().add(text, expires_at=expires_at)


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
async def test_a_put_racing_aclose_gets_a_receipt_that_settles(
    emulator: Emulator, client: AsyncHookClient, paused: bool
) -> None:
    store = SlowStore()
    receipts: list[Receipt] = []
    left: list[Receipt] = []
    async with Outbox(client, store=store) as outbox:
        if paused:
            outbox.pause()

        async def put() -> None:
            receipts.append(await outbox.put("raced"))

        async def close() -> None:
            left.extend(await outbox.aclose())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(put)
            await store.adding.wait()  # the put is committing...
            tasks.start_soon(close)
            await anyio.sleep(1)  # ...while aclose runs as far as it can
            store.release.set()
    (receipt,) = receipts
    with anyio.fail_after(HOUR):  # virtual time: an unsettled receipt fails, it does not hang
        if paused:
            assert left == [receipt]
            with pytest.raises(OutboxClosedError):
                await receipt.wait()
        else:
            await receipt.wait()
            assert left == []
            assert texts(emulator) == ["raced"]


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
async def test_messages_left_at_close_are_a_warning_with_their_count(
    emulator: Emulator,
    client: AsyncHookClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    durable: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    store = SQLiteStore(tmp_path / "outbox.sqlite") if durable else MemoryStore()
    emulator.fail_next(503, times=1000)  # an outage longer than the drain
    async with Outbox(client, store=store, drain_timeout=5) as outbox:
        for i in range(3):
            await outbox.put(f"m{i}")
    (record,) = [r for r in caplog.records if "undelivered" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "closed with 3 message(s) undelivered" in record.getMessage()
    assert record.hookapi_undelivered == 3  # type: ignore[attr-defined]
    if durable:
        assert "keeps them for the next start" in record.getMessage()
    else:
        assert "lost when this process ends" in record.getMessage()


async def test_an_error_inside_the_block_is_raised_not_swallowed(
    client: AsyncHookClient,
) -> None:
    with pytest.raises(ZeroDivisionError):
        async with Outbox(client):
            1 / 0  # noqa: B018
