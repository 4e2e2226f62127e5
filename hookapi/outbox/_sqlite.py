"""The durable store: :class:`SQLiteStore`, one SQLite file through the standard library.

``sqlite3`` blocks, so every call runs in a worker thread (``anyio.to_thread``, one at a time
on one connection), which works the same on asyncio and trio. The database is in WAL mode with
``synchronous=FULL``: a commit is on disk before :meth:`SQLiteStore.add` returns, so a message
whose ``put`` returned survives a crash of the process or of the machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._stores import StoredMessage, StoredState

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hookapi_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at REAL,
    reason TEXT
)
"""


class SQLiteStore:
    """Keeps an outbox's messages in a SQLite file, so they survive a crash or a restart.

    Args:
        path: The database file (created if missing). Give each outbox its own file.

    Example:
        >>> SQLiteStore("outbox.sqlite")
        <SQLiteStore path='outbox.sqlite'>
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, not {type(path).__name__}.")
        self._path = os.fspath(path)
        self._connection: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"<SQLiteStore path={self._path!r}>"

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        if connection is None:
            raise RuntimeError("The SQLiteStore is not open.")
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(work, connection, limiter=self._limiter)

    async def open(self) -> list[StoredMessage]:
        """Open (or create) the database and return every message in it, oldest first."""
        if self._connection is not None:
            raise RuntimeError("This SQLiteStore is already open.")
        self._connection = await anyio.to_thread.run_sync(self._connect)
        try:
            rows = await self._run(
                lambda c: c.execute(
                    "SELECT id, text, state, expires_at, reason FROM hookapi_outbox ORDER BY id"
                ).fetchall()
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise
        return [
            StoredMessage(
                id=row[0], text=row[1], state=StoredState(row[2]), expires_at=row[3], reason=row[4]
            )
            for row in rows
        ]

    def _connect(self) -> sqlite3.Connection:
        import sqlite3  # noqa: PLC0415  (`import hookapi` should not pay for it)

        # isolation_level=None: autocommit, so each statement below is its own transaction and
        # is committed (and, with synchronous=FULL, synced) before execute() returns.
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    async def add(self, text: str, *, expires_at: float | None) -> int:
        """Commit a new queued message; return its id once it is on disk."""

        def insert(c: sqlite3.Connection) -> int:
            cursor = c.execute(
                "INSERT INTO hookapi_outbox (text, state, expires_at) VALUES (?, ?, ?)",
                (text, StoredState.QUEUED.value, expires_at),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._run(insert)

    async def update(self, id: int, state: StoredState, *, reason: str | None = None) -> None:
        """Commit a message's new state."""
        await self._run(
            lambda c: c.execute(
                "UPDATE hookapi_outbox SET state = ?, reason = ? WHERE id = ?",
                (state.value, reason, id),
            )
        )

    async def remove(self, id: int) -> None:
        """Delete a message."""
        await self._run(lambda c: c.execute("DELETE FROM hookapi_outbox WHERE id = ?", (id,)))

    async def aclose(self) -> None:
        """Close the connection; the file keeps every message for the next :meth:`open`."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await anyio.to_thread.run_sync(connection.close, limiter=self._limiter)
