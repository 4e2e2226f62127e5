"""The durable store: :class:`SQLiteStore`, one SQLite file through the standard library.

``sqlite3`` blocks, so every call runs in a worker thread (``anyio.to_thread``, one at a time
on one connection), which works the same on asyncio and trio. The database is in WAL mode with
``synchronous=FULL``: a commit is on disk before :meth:`SQLiteStore.add` returns, so a message
whose ``put`` returned survives a crash of the process or of the machine. The connection holds
SQLite's exclusive lock on the file for as long as the store is open, so that no second outbox
delivers the same messages; the file records the hook it serves, so that none goes elsewhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._sqlite_file import connect, store_error
from ._stores import StoredMessage, StoredState, StoreHookMismatchError

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SQLiteStore"]

T = TypeVar("T")

logger = logging.getLogger("hookapi")


class SQLiteStore:
    """Keeps an outbox's messages in a SQLite file, so they survive a crash or a restart.

    One outbox at a time may open a file (another gets :class:`StoreInUseError`), and the
    file keeps the hook it was first opened for: an outbox whose client posts to another
    hook is refused with :class:`StoreHookMismatchError` while the file holds messages, unless
    ``reassign=True`` says to send them to the new hook. The file, and the ``-wal`` file next
    to it, are created readable by their owner only, since they hold the messages.

    Args:
        path: The database file (created if missing). Give each outbox its own file.
        reassign: Send the messages of a file that serves another hook to the hook of the
            outbox opening it (logged at WARNING), instead of refusing it.

    Example:
        >>> SQLiteStore("outbox.sqlite")
        <SQLiteStore path='outbox.sqlite'>
    """

    def __init__(self, path: str | os.PathLike[str], *, reassign: bool = False) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, not {type(path).__name__}.")
        self._path = os.fspath(path)
        self._reassign = bool(reassign)
        self._connection: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"<SQLiteStore path={self._path!r}>"

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    async def _run(self, work: Callable[[sqlite3.Connection], T], doing: str) -> T:
        connection, limiter = self._connection, self._limiter
        if connection is None or limiter is None:
            raise RuntimeError("The SQLiteStore is not open.")
        return await anyio.to_thread.run_sync(self._call, work, connection, doing, limiter=limiter)

    def _call(
        self, work: Callable[[sqlite3.Connection], T], c: sqlite3.Connection, doing: str
    ) -> T:
        import sqlite3  # noqa: PLC0415  (`import hookapi` should not pay for it)

        try:
            return work(c)
        except sqlite3.Error as exc:
            raise store_error(self._path, exc, doing) from exc

    async def open(self, *, hook: str | None = None) -> list[StoredMessage]:
        """Open (or create) the database and return every message in it, oldest first.

        Args:
            hook: The hook the messages are for (an :class:`~hookapi.Outbox` passes its
                client's URL, secret hidden): recorded by a new file, checked by an old one.

        Raises:
            StoreInUseError: Another outbox has the file open.
            StoreHookMismatchError: The file holds messages for another hook.
            StoreError: The file is a directory, damaged, read-only, full, or from a newer
                hookapi.
        """
        if self._connection is not None:
            raise RuntimeError("This SQLiteStore is already open.")
        # A limiter belongs to the event loop it was made on: a new one at each open lets a
        # store closed on one loop (asyncio, say) open again on another (trio).
        limiter = anyio.CapacityLimiter(1)
        connection = await anyio.to_thread.run_sync(connect, self._path, limiter=limiter)
        self._connection, self._limiter = connection, limiter
        try:
            rows = await self._run(lambda c: self._start(c, hook), "reading")
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

    def _start(self, c: sqlite3.Connection, hook: str | None) -> list[tuple[Any, ...]]:
        rows = c.execute(
            "SELECT id, text, state, expires_at, reason FROM hookapi_outbox ORDER BY id"
        ).fetchall()
        if hook is not None:
            self._claim(c, hook, len(rows))
        return rows

    def _claim(self, c: sqlite3.Connection, hook: str, held: int) -> None:
        """Record the hook a file serves, or check it: its messages must not go elsewhere."""
        found = c.execute("SELECT value FROM hookapi_meta WHERE key = 'hook'").fetchone()
        stored = None if found is None else str(found[0])
        if stored == hook:
            return
        if stored is not None and held:
            if not self._reassign:
                raise StoreHookMismatchError(
                    f"The outbox file {self._path!r} holds {held} message(s) for the hook "
                    f"{stored}, not for {hook}, which this outbox's client posts to. Give "
                    "this outbox its own file, or open it with "
                    "SQLiteStore(path, reassign=True) to send those messages to the new hook.",
                    path=self._path,
                    stored_hook=stored,
                    hook=hook,
                )
            logger.warning(
                "hookapi: outbox file %r: %d message(s) for the hook %s now go to %s "
                "(reassign=True)",
                self._path,
                held,
                stored,
                hook,
                extra={"hookapi_event": "outbox"},
            )
        c.execute("INSERT OR REPLACE INTO hookapi_meta (key, value) VALUES ('hook', ?)", (hook,))

    async def add(self, text: str, *, expires_at: float | None) -> int:
        """Commit a new queued message; return its id once it is on disk."""

        def insert(c: sqlite3.Connection) -> int:
            cursor = c.execute(
                "INSERT INTO hookapi_outbox (text, state, expires_at) VALUES (?, ?, ?)",
                (text, StoredState.QUEUED.value, expires_at),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._run(insert, "adding a message to")

    async def update(self, id: int, state: StoredState, *, reason: str | None = None) -> None:
        """Commit a message's new state."""
        await self._run(
            lambda c: c.execute(
                "UPDATE hookapi_outbox SET state = ?, reason = ? WHERE id = ?",
                (state.value, reason, id),
            ),
            f"recording message {id} as {state.value} in",
        )

    async def remove(self, id: int) -> None:
        """Delete a message."""
        await self._run(
            lambda c: c.execute("DELETE FROM hookapi_outbox WHERE id = ?", (id,)),
            f"removing message {id} from",
        )

    async def aclose(self) -> None:
        """Close the connection (and release the file); the file keeps every message."""
        connection, self._connection = self._connection, None
        limiter, self._limiter = self._limiter, None
        if connection is not None:
            await anyio.to_thread.run_sync(connection.close, limiter=limiter)
