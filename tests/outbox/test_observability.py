"""What the outbox tells: logs (redacted), reprs, callbacks, and errors that are not its own."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import anyio
import pytest

from hookapi import (
    AsyncHookClient,
    ClientClosedError,
    DeadLetter,
    MemoryStore,
    Outbox,
    ReceiptState,
    SQLiteStore,
    StoredMessage,
    StoredState,
)
from hookapi.emulator import Emulator, Hook
from hookapi.testing import make_client

from .conftest import texts

pytestmark = pytest.mark.anyio


async def test_every_state_change_is_logged_and_the_secret_never_is(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hookapi")
    client = make_client(emulator, hook)
    emulator.fail_next(400)
    async with Outbox(client) as outbox:
        bad = await outbox.put("refused")
        good = await outbox.put("posted")
        await good.wait()
        said = "\n".join([repr(outbox), repr(bad), repr(good), str(bad.error)])
    states: dict[int, list[str]] = {}
    for record in caplog.records:
        if hasattr(record, "hookapi_state"):
            id, state = vars(record)["hookapi_message_id"], vars(record)["hookapi_state"]
            states.setdefault(id, []).append(state)
    assert states == {
        bad.id: ["queued", "sending", "failed"],
        good.id: ["queued", "sending", "delivered"],
    }
    assert [r.levelno for r in caplog.records if "dead letter" in r.getMessage()] == [
        logging.WARNING
    ]
    everything = "\n".join(r.getMessage() for r in caplog.records) + said
    assert hook.secret not in everything
    assert "***" in everything


def test_reprs_say_what_they_hold(client: AsyncHookClient, tmp_path: Path) -> None:
    outbox = Outbox(client)
    assert repr(outbox) == f"<Outbox new hook_id={client.hook_id!r} pending=0 dead=0>"
    assert repr(MemoryStore()) == "<MemoryStore messages=0>"
    assert repr(SQLiteStore("x.sqlite")) == "<SQLiteStore path='x.sqlite'>"


async def test_pause_by_hand_and_a_callback_per_dead_letter(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    letters: list[DeadLetter] = []
    emulator.fail_next(400)
    async with Outbox(client, on_dead_letter=letters.append, drain_timeout=math.inf) as outbox:
        first = await outbox.put("refused")
        with pytest.raises(Exception, match="400"):
            await first.wait()
        assert [letter.id for letter in letters] == [first.id]
        outbox.pause()
        outbox.pause()  # again: nothing more
        held = await outbox.put("held")
        await anyio.sleep(10)
        assert held.state is ReceiptState.QUEUED
        assert outbox.paused
        assert outbox.pause_error is None
        outbox.resume()
        await held.wait()
    assert texts(emulator) == ["held"]


async def test_a_closed_client_pauses_the_outbox(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    reported: list[Exception] = []
    await client.aclose()
    async with Outbox(client, on_pause=reported.append) as outbox:
        receipt = await outbox.put("nowhere to go")
        await anyio.sleep(1)
        assert len(reported) == 1
        assert isinstance(outbox.pause_error, ClientClosedError)
    assert receipt.state is ReceiptState.QUEUED
    assert texts(emulator) == []


async def test_at_most_once_paused_mid_send_goes_back_in_line(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client, delivery="at_most_once", concurrency=3) as outbox:
        outbox.pause()
        receipts = [await outbox.put(f"m{i}") for i in range(5)]
        emulator.fail_next(404, times=3)
        emulator.latency = 1.0  # so that the three are in flight together
        outbox.resume()  # three start at once, and all three are refused
        await anyio.sleep(5)  # all three answered, and came back in line
        assert outbox.paused
        assert [r.id for r in outbox.pending] == [r.id for r in receipts]
        assert all(r.state is ReceiptState.QUEUED for r in receipts)
        outbox.resume()
        for receipt in receipts:
            await receipt.wait()
    assert sorted(texts(emulator)) == [f"m{i}" for i in range(5)]
    assert outbox.failed() == []


class BrokenStore(MemoryStore):
    """A store that fails where told, as a full disk would."""

    def __init__(self, *, fail_on: str, rows: list[StoredMessage] | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.rows = rows
        self.closed = False

    async def open(self) -> list[StoredMessage]:
        return self.rows if self.rows is not None else await super().open()

    async def update(self, id: int, state: StoredState, *, reason: str | None = None) -> None:
        if self.fail_on == "update":
            raise OSError("disk full")
        await super().update(id, state, reason=reason)

    async def remove(self, id: int) -> None:
        if self.fail_on == "remove":
            raise OSError("disk full")
        await super().remove(id)

    async def aclose(self) -> None:
        self.closed = True


async def test_a_store_failing_at_start_is_raised_and_closed(client: AsyncHookClient) -> None:
    row = StoredMessage(id=1, text="half sent", state=StoredState.SENDING)
    store = BrokenStore(fail_on="update", rows=[row])
    outbox = Outbox(client, store=store, delivery="at_most_once")
    with pytest.raises(OSError, match="disk full"):
        async with outbox:
            pytest.fail("never entered")
    assert store.closed
    assert not outbox.closed


async def test_a_store_failing_while_sending_is_raised_from_the_block(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    store = BrokenStore(fail_on="remove")

    async def run() -> None:
        async with Outbox(client, store=store) as outbox:
            await outbox.put("posted, then the store fails")
            await anyio.sleep_forever()

    with pytest.raises(ExceptionGroup) as caught:
        await run()
    assert caught.group_contains(OSError, match="disk full", depth=None)
    assert store.closed
    assert texts(emulator) == ["posted, then the store fails"]
