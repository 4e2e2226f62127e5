"""The SQLite outbox file itself: private, locked for one opener, versioned, errors named.

Failures are told as :class:`StoreError` sentences that name the file. Everything here blocks
and runs in the store's worker thread.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING

from ._stores import StoreError, StoreInUseError

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SCHEMA_VERSION", "connect", "store_error"]

logger = logging.getLogger("hookapi")

#: The schema this hookapi writes, kept in ``PRAGMA user_version`` (0: a file from before
#: versions were kept, which has the same tables but the hook one).
SCHEMA_VERSION = 1

_TABLES = (
    """
    CREATE TABLE IF NOT EXISTS hookapi_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        text TEXT NOT NULL,
        state TEXT NOT NULL,
        expires_at REAL,
        reason TEXT
    )
    """,
    "CREATE TABLE IF NOT EXISTS hookapi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# SQLite's primary result codes (the low byte of an extended code).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


def connect(path: str) -> sqlite3.Connection:
    """Open the file for one outbox: private if new, locked, in WAL mode, schema checked."""
    import sqlite3  # noqa: PLC0415  (`import hookapi` should not pay for it)

    if os.path.isdir(path):
        raise StoreError(
            f"The outbox file {path!r} is a directory: give the path of a file (it is created "
            "if missing).",
            path=path,
        )
    create_private(path)
    folder = os.path.dirname(path) or "."
    if not (os.access(path, os.W_OK) and os.access(folder, os.W_OK)):
        raise StoreError(
            f"The outbox file {path!r} is read-only (or its directory is, where the -wal file "
            "goes): the outbox must write to both.",
            path=path,
        )
    try:
        # timeout=0: the file is either ours alone or another outbox's; waiting cannot help.
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    except sqlite3.Error as exc:
        raise store_error(path, exc, "opening") from exc
    try:
        # Set before the first access, this lock is held until close: a second opener (another
        # worker, or a copy of the process still running) is refused instead of sending every
        # message again. In WAL mode it also keeps the WAL index in memory: no -shm file.
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        version = _check(connection, path)  # before any write: a file refused stays as it was
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        _prepare(connection, version)
    except sqlite3.Error as exc:
        connection.close()
        raise store_error(path, exc, "opening") from exc
    except BaseException:
        connection.close()
        raise
    return connection


def _prepare(c: sqlite3.Connection, version: int) -> None:
    """Create the tables of a new file, or those an older version's file lacks."""
    c.execute("BEGIN IMMEDIATE")
    try:
        for table in _TABLES:
            c.execute(table)
        if version < SCHEMA_VERSION:
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise


def _check(c: sqlite3.Connection, path: str) -> int:
    """Check that a file is empty or an outbox this version reads; return its version."""
    version = int(c.execute("PRAGMA user_version").fetchone()[0])
    tables = {str(row[0]) for row in c.execute("SELECT name FROM sqlite_master")}
    if "hookapi_outbox" not in tables and tables - {"sqlite_sequence"}:
        raise StoreError(
            f"The file {path!r} is a SQLite database of something else (it has other "
            "tables); give the outbox a file of its own.",
            path=path,
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The outbox file {path!r} was written by a newer hookapi (schema version "
            f"{version}; this one reads up to {SCHEMA_VERSION}): upgrade hookapi to read it.",
            path=path,
        )
    return version


def create_private(path: str) -> None:
    """Create a missing file readable by its owner only (0600); warn if an old one is not.

    SQLite gives the ``-wal`` file the mode of the database file, so it is private too.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            warn_if_shared(name)
    except OSError as exc:
        raise StoreError(
            f"The outbox file {path!r} cannot be created: {exc.strerror or exc}.", path=path
        ) from exc
    else:
        os.close(fd)


def warn_if_shared(name: str) -> None:
    """Log a warning when a file holding messages can be read by other users."""
    try:
        mode = os.stat(name).st_mode
    except OSError:
        return
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning(
            "hookapi: the outbox file %r is readable by other users (mode %s) and holds the "
            "messages; make it private with: chmod 600 %s",
            name,
            oct(stat.S_IMODE(mode)),
            name,
            extra={"hookapi_event": "outbox"},
        )


def store_error(path: str, exc: sqlite3.Error, doing: str) -> StoreError:
    """The :class:`StoreError` for a ``sqlite3`` error met while ``doing`` the file."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    detail = str(exc).rstrip(".")
    name = repr(path)
    if code in (_BUSY, _LOCKED):
        return StoreInUseError(
            f"The outbox file {name} is open in another outbox (in this process or another): "
            "two outboxes on one file would both deliver every message in it. Give each "
            "outbox (each worker process) its own file.",
            path=path,
        )
    if code == _READONLY:
        text = f"The outbox file {name} is read-only (or its directory is): {doing} it failed."
    elif code in (_CORRUPT, _NOTADB):
        text = (
            f"The outbox file {name} is not a SQLite database, or is damaged (corrupt or "
            f"truncated): {detail}. Move it aside to start with an empty outbox."
        )
    elif code == _FULL:
        text = f"The disk of the outbox file {name} is full: {doing} it failed ({detail})."
    elif code == _CANTOPEN:
        text = f"The outbox file {name} cannot be opened ({detail})."
    elif code == _IOERR:
        text = f"An I/O error while {doing} the outbox file {name}: {detail}."
    else:
        text = f"{doing.capitalize()} the outbox file {name} failed: {detail}."
    return StoreError(text, path=path)
