"""The durable store: committed before ``put`` returns, resumed in order, honest after a crash."""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from pathlib import Path

import pytest

from hookapi import (
    AsyncHookClient,
    BadRequestError,
    Outbox,
    ReceiptState,
    SQLiteStore,
    StoredState,
    StoreError,
)
from hookapi.emulator import Emulator

from .conftest import texts

pytestmark = pytest.mark.anyio


def rows(path: Path) -> list[tuple[int, str, str]]:
    """What another process would read from the file right now."""
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT id, text, state FROM hookapi_outbox ORDER BY id").fetchall()
    db.close()
    return found


async def test_put_returns_once_the_message_is_committed(
    emulator: Emulator, client: AsyncHookClient, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite"
    store = SQLiteStore(path)
    emulator.fail_next(404)  # pause at once, so the messages stay queued
    async with Outbox(client, store=store) as outbox:
        receipt = await outbox.put("kept")
        connection = store._connection
        assert connection is not None
        # Only the outbox's own connection may read the file while it is open.
        found = connection.execute("SELECT id, text, state FROM hookapi_outbox").fetchall()
        assert found == [(receipt.id, "kept", "queued")]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert rows(path) == [(receipt.id, "kept", "queued")]


async def test_a_restart_resumes_in_order_and_keeps_dead_letters(
    emulator: Emulator, client: AsyncHookClient, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite"
    emulator.fail_next(400)
    async with Outbox(client, store=path) as outbox:
        bad = await outbox.put("refused")
        with pytest.raises(BadRequestError):
            await bad.wait()
        emulator.fail_next(404)
        queued = [await outbox.put(f"m{i}") for i in range(4)]
    assert [r.id for r in await outbox.aclose()] == [r.id for r in queued]
    assert texts(emulator) == []

    async with Outbox(client, store=path, drain_timeout=math.inf) as again:
        assert [(r.id, r.text) for r in again.pending] == [(r.id, r.text) for r in queued]
        (dead,) = again.failed()
        assert (dead.id, dead.text, dead.state, dead.error) == (
            bad.id,
            "refused",
            ReceiptState.FAILED,
            None,
        )
        assert "400" in dead.reason
        retried = await again.retry(dead)
    assert retried.state is ReceiptState.DELIVERED
    assert texts(emulator) == ["m0", "m1", "m2", "m3", "refused"]
    assert rows(path) == []


async def test_at_most_once_reports_a_message_caught_mid_send_as_unknown(
    emulator: Emulator, client: AsyncHookClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    path = tmp_path / "outbox.sqlite"
    store = SQLiteStore(path)
    await store.open()
    first = await store.add("caught mid-send", expires_at=None)
    await store.update(first, StoredState.SENDING)  # what a crash mid-send leaves
    await store.add("not yet sent", expires_at=None)
    await store.aclose()
    async with Outbox(client, store=path, delivery="at_most_once") as outbox:
        (dead,) = outbox.failed()
        assert (dead.id, dead.state) == (first, ReceiptState.UNKNOWN)
        assert "may or may not have been posted" in dead.reason
    assert texts(emulator) == ["not yet sent"]
    assert rows(path) == [(first, "caught mid-send", "unknown")]
    assert any("last run stopped" in r.getMessage() for r in caplog.records)


async def test_at_least_once_sends_a_message_caught_mid_send_again(
    emulator: Emulator, client: AsyncHookClient, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite"
    store = SQLiteStore(path)
    await store.open()
    first = await store.add("caught mid-send", expires_at=None)
    await store.update(first, StoredState.SENDING)
    await store.aclose()
    async with Outbox(client, store=path):
        pass
    assert texts(emulator) == ["caught mid-send"]
    assert rows(path) == []


async def test_a_ttl_survives_a_restart_as_wall_clock_time(
    emulator: Emulator, client: AsyncHookClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    path = tmp_path / "outbox.sqlite"
    store = SQLiteStore(path)
    await store.open()
    stale = await store.add("stale", expires_at=time.time() - 1)
    await store.add("fresh", expires_at=time.time() + 3600)
    await store.aclose()
    async with Outbox(client, store=path):
        pass
    assert texts(emulator) == ["fresh"]
    (dropped,) = [r.getMessage() for r in caplog.records]
    assert f"message {stale} dropped: its ttl passed" in dropped
    assert rows(path) == []


async def test_the_store_refuses_misuse(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.sqlite")
    assert store.path.endswith("x.sqlite")
    with pytest.raises(RuntimeError, match="not open"):
        await store.add("x", expires_at=None)
    await store.open()
    with pytest.raises(RuntimeError, match="already open"):
        await store.open()
    await store.aclose()
    await store.aclose()  # again: nothing to do
    with pytest.raises(TypeError):
        SQLiteStore(42)  # type: ignore[arg-type]


async def test_a_file_that_is_not_a_database_is_refused_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "not.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="not a SQLite database"):
        await store.open()
    assert store._connection is None
