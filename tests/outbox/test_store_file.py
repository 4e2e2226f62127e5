"""The SQLite file: one opener, one hook, private, versioned, and typed errors that name it."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hookapi import (
    AsyncHookClient,
    AuthenticationError,
    HookAPIError,
    Outbox,
    ReceiptState,
    SQLiteStore,
    StoreError,
    StoreHookMismatchError,
    StoreInUseError,
)
from hookapi.emulator import Emulator, Hook
from hookapi.testing import make_client

from .conftest import texts

pytestmark = pytest.mark.anyio


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def exists(path: str) -> bool:
    return os.path.exists(path)


def contents(path: Path) -> str:
    return path.read_bytes().decode("latin-1")


def truncate_by_half(path: Path) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


@pytest.fixture
def shared_umask() -> Iterator[None]:
    """The usual umask, under which files are created readable by everyone."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- one opener ----------------------------------------------------------------------------------


async def test_a_second_opener_is_refused_naming_the_file_never_the_secret(
    emulator: Emulator, hook: Hook, client: AsyncHookClient, path: Path
) -> None:
    emulator.fail_next(404)  # pause: the message stays in the file
    async with Outbox(client, store=path) as first:
        await first.put("once")
        with pytest.raises(StoreInUseError) as caught:
            async with Outbox(client, store=path):
                pytest.fail("two outboxes on one file")
        assert str(path) in str(caught.value)
        assert "its own file" in str(caught.value)
        assert hook.secret not in str(caught.value)
        assert caught.value.path == str(path)
        with pytest.raises(StoreInUseError):
            await SQLiteStore(path).open()
        first.resume()
    # Released on close: the next outbox opens it.
    async with Outbox(client, store=path):
        pass
    assert texts(emulator) == ["once"]


# -- one hook ------------------------------------------------------------------------------------


async def test_a_file_refuses_another_hooks_client_and_reassign_moves_its_messages(
    emulator: Emulator, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    incidents, marketing = emulator.create_hook("Incidents"), emulator.create_hook("Marketing")
    to_incidents, to_marketing = make_client(emulator, incidents), make_client(emulator, marketing)
    emulator.fail_next(401, hook=incidents)
    paused = anyio.Event()
    async with Outbox(to_incidents, store=path, on_pause=lambda _: paused.set()) as outbox:
        first = await outbox.put("INCIDENT: db down")
        with anyio.fail_after(60):
            await paused.wait()
        assert isinstance(outbox.pause_error, AuthenticationError)
    assert first.state is ReceiptState.QUEUED

    with pytest.raises(StoreHookMismatchError) as caught:
        async with Outbox(to_marketing, store=path):
            pytest.fail("opened another hook's file")
    error = caught.value
    assert (error.path, error.stored_hook, error.hook) == (
        str(path),
        to_incidents.url,
        to_marketing.url,
    )
    for secret in (incidents.secret, marketing.secret):
        assert secret not in str(error)
        assert secret not in contents(path)
    assert "reassign=True" in str(error)
    assert emulator.messages() == []

    caplog.set_level(logging.WARNING, logger="hookapi")
    async with Outbox(to_marketing, store=SQLiteStore(path, reassign=True), drain_timeout=math.inf):
        pass
    assert [(m.text, m.hook_id) for m in emulator.messages()] == [
        ("INCIDENT: db down", marketing.id)
    ]
    assert any("now go to" in r.getMessage() for r in caplog.records)
    # An empty file takes the hook of whoever opens it next.
    async with Outbox(to_incidents, store=path) as outbox:
        await (await outbox.put("back")).wait()
    assert texts(emulator)[-1] == "back"


# -- private files -------------------------------------------------------------------------------


@pytest.mark.usefixtures("shared_umask")
async def test_the_file_and_its_wal_are_created_private(
    emulator: Emulator, client: AsyncHookClient, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    emulator.fail_next(404)
    async with Outbox(client, store=path) as outbox:
        await outbox.put("a secret plan")
        assert mode(path) == 0o600
        assert mode(f"{path}-wal") == 0o600
        assert not exists(f"{path}-shm")  # the WAL index is kept in memory
    assert mode(path) == 0o600
    assert not [r for r in caplog.records if "readable by other users" in r.getMessage()]


@pytest.mark.usefixtures("shared_umask")
async def test_an_existing_file_readable_by_others_is_warned_about(
    client: AsyncHookClient, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 0")
    db.close()
    assert mode(path) == 0o644
    caplog.set_level(logging.WARNING, logger="hookapi")
    async with Outbox(client, store=path):
        pass
    (record,) = caplog.records
    assert str(path) in record.getMessage()
    assert "readable by other users (mode 0o644)" in record.getMessage()
    assert f"chmod 600 {path}" in record.getMessage()


# -- typed errors --------------------------------------------------------------------------------


def make_outbox_file(path: Path, version: int, *, tables: str = "") -> None:
    with sqlite3.connect(path) as db:
        db.executescript(tables)
        db.execute(f"PRAGMA user_version = {version}")
    db.close()


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: p.write_bytes(b"not a database " * 300), "not a SQLite database, or is damaged"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "cannot be created"),  # its directory is missing (below)
        (lambda p: make_outbox_file(p, 2, tables="CREATE TABLE hookapi_outbox (id);"), "newer"),
        (lambda p: make_outbox_file(p, 0, tables="CREATE TABLE users (id);"), "something else"),
    ],
    ids=["corrupt", "directory", "missing-directory", "newer-schema", "another-apps-database"],
)
async def test_a_file_that_cannot_serve_is_a_typed_error_naming_it(
    client: AsyncHookClient, tmp_path: Path, make: object, said: str, request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "outbox.sqlite"
    if "missing-directory" in request.node.callspec.id:
        path = tmp_path / "missing" / "outbox.sqlite"
    make(path)  # type: ignore[operator]
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StoreError) as caught:
        async with Outbox(client, store=path):
            pytest.fail("opened a file that cannot serve")
    assert said in str(caught.value)
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value.__cause__, StoreError)
    if before is not None:
        assert path.read_bytes() == before  # refused without writing to it


async def test_a_truncated_file_is_a_typed_error(client: AsyncHookClient, path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    for i in range(200):
        await store.add(f"message {i} " + "x" * 500, expires_at=None)
    await store.aclose()
    truncate_by_half(path)
    with pytest.raises(StoreError, match="damaged \\(corrupt or truncated\\)"):
        async with Outbox(client, store=path):
            pytest.fail("opened a truncated file")


async def test_a_file_from_before_schema_versions_is_upgraded(
    emulator: Emulator, client: AsyncHookClient, path: Path
) -> None:
    make_outbox_file(
        path,
        0,
        tables="""CREATE TABLE hookapi_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,
            text TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL, reason TEXT);
            INSERT INTO hookapi_outbox (text, state) VALUES ('left by 0.1', 'queued');""",
    )
    async with Outbox(client, store=path):
        pass
    assert texts(emulator) == ["left by 0.1"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        assert db.execute("SELECT value FROM hookapi_meta").fetchall() == [(client.url,)]
    db.close()


async def test_a_read_only_file_is_a_typed_error(
    path: Path, client: AsyncHookClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_outbox_file(path, 1, tables="CREATE TABLE hookapi_outbox (id);")
    os.chmod(path, 0o444)
    if os.access(path, os.W_OK):  # root may write anything: answer as the kernel would another
        monkeypatch.setattr(
            os, "access", lambda name, how: not (how & os.W_OK and name == str(path))
        )
    with pytest.raises(StoreError, match="is read-only") as caught:
        async with Outbox(client, store=path):
            pytest.fail("opened a read-only file")
    assert str(path) in str(caught.value)


async def test_a_write_refused_as_read_only_is_a_typed_error(path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    assert store._connection is not None
    store._connection.execute("PRAGMA query_only = ON")  # SQLite's own read-only refusal
    with pytest.raises(StoreError, match="is read-only") as caught:
        await store.add("x", expires_at=None)
    assert str(path) in str(caught.value)
    await store.aclose()


async def test_a_full_disk_refuses_the_put_and_the_outbox_goes_on(
    emulator: Emulator, client: AsyncHookClient, path: Path
) -> None:
    store = SQLiteStore(path)
    async with Outbox(client, store=store) as outbox:
        await (await outbox.put("fits")).wait()
        connection = store._connection
        assert connection is not None
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
        with pytest.raises(StoreError, match="is full: adding a message to it failed") as caught:
            await outbox.put("y" * 100_000)
        assert str(path) in str(caught.value)
        assert outbox.pending == []
        connection.execute("PRAGMA max_page_count = 1073741823")  # room again
        await (await outbox.put("after")).wait()
    assert texts(emulator) == ["fits", "after"]


class FullDiskStore(SQLiteStore):
    """A SQLite store whose disk fills up while recording deliveries (``remove``)."""

    def __init__(self, path: Path, *, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    async def remove(self, id: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError(f"The disk of the outbox file {self.path!r} is full.", path=self.path)
        await super().remove(id)


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
async def test_a_full_disk_while_recording_a_delivery_neither_stops_nor_resends(
    emulator: Emulator,
    client: AsyncHookClient,
    path: Path,
    caplog: pytest.LogCaptureFixture,
    delivery: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    store = FullDiskStore(path, failures=2)
    async with Outbox(client, store=store, delivery=delivery) as outbox:  # type: ignore[arg-type]
        receipts = [await outbox.put(f"m{i}") for i in range(4)]
        for receipt in receipts:
            await receipt.wait()
    assert texts(emulator) == ["m0", "m1", "m2", "m3"]  # each once, and the outbox went on
    warned = [r.getMessage() for r in caplog.records if "could not record" in r.getMessage()]
    assert len(warned) == 2
    assert "message 1 as done" in warned[0]
    async with Outbox(client, store=path):  # everything got recorded in the end
        pass
    assert texts(emulator) == ["m0", "m1", "m2", "m3"]


async def test_a_disk_full_until_close_leaves_the_next_start_to_decide(
    emulator: Emulator, client: AsyncHookClient, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    async with Outbox(client, store=FullDiskStore(path, failures=1000)) as outbox:
        await (await outbox.put("posted once here")).wait()
    assert texts(emulator) == ["posted once here"]
    assert any("next start finds them" in r.getMessage() for r in caplog.records)


async def test_at_most_once_pauses_when_it_cannot_record_a_send(
    emulator: Emulator, client: AsyncHookClient, path: Path
) -> None:
    class NoSendingRecord(SQLiteStore):
        async def update(self, id: int, state: object, *, reason: str | None = None) -> None:
            raise StoreError("The disk is full.", path=self.path)

    paused: list[HookAPIError] = []
    event = anyio.Event()

    def on_pause(error: HookAPIError) -> None:
        paused.append(error)
        event.set()

    async with Outbox(
        client, store=NoSendingRecord(path), delivery="at_most_once", on_pause=on_pause
    ) as outbox:
        receipt = await outbox.put("not without a record")
        with anyio.fail_after(60):
            await event.wait()
    assert isinstance(paused[0], StoreError)
    assert receipt.state is ReceiptState.QUEUED
    assert emulator.messages() == []


# -- across event loops --------------------------------------------------------------------------


@pytest.mark.parametrize("backends", [("asyncio", "trio"), ("trio", "asyncio")])
def test_a_store_serves_one_event_loop_then_another(path: Path, backends: tuple[str, str]) -> None:
    store = SQLiteStore(path)

    async def use(text: str) -> list[str]:
        rows = await store.open()
        await store.add(text, expires_at=None)
        await store.aclose()
        return [row.text for row in rows]

    first, second = backends
    assert anyio.run(use, "first", backend=first) == []
    assert anyio.run(use, "second", backend=second) == ["first"]


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (14, "cannot be opened (unable to open database file)"),  # SQLITE_CANTOPEN
        (10, "An I/O error while reading the outbox file"),  # SQLITE_IOERR
        (1, "Reading the outbox file"),  # SQLITE_ERROR, and any other
    ],
)
def test_every_sqlite_error_is_told_as_a_store_error(code: int, said: str) -> None:
    from hookapi.outbox._sqlite_file import store_error  # noqa: PLC0415

    raw = sqlite3.OperationalError("unable to open database file")
    raw.sqlite_errorcode = code
    error = store_error("/srv/outbox.sqlite", raw, "reading")
    assert type(error) is StoreError
    assert said in str(error)
    assert "'/srv/outbox.sqlite'" in str(error)
