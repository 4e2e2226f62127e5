"""Where an outbox keeps its messages: the :class:`OutboxStore` protocol and :class:`MemoryStore`.

The outbox holds its queue in memory either way; a store is its record, read once at start
(to resume what an earlier run left) and written at each step a restart must know about:
accepted, handed to the network (``at_most_once`` only), given up, delivered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._exceptions import HookAPIError
from .._quota import HookKey

__all__ = [
    "MemoryStore",
    "OutboxStore",
    "StoreError",
    "StoreHookMismatchError",
    "StoreInUseError",
    "StoreUnavailableError",
    "StoredMessage",
    "StoredState",
]


class StoreError(HookAPIError):
    """An outbox's store could not be used: its file is damaged, read-only, full, or newer.

    The message names the file and says what is wrong with it. Raised by ``async with
    Outbox(...)`` (the outbox does not start), by ``put`` (the message was not accepted), and
    given to ``on_pause`` when the outbox cannot record that a message is about to be sent.

    Attributes:
        path: The store's file.
    """

    concerns_message = False

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class StoreInUseError(StoreError):
    """Another outbox (in this process or another) has the store's file open.

    Two outboxes on one file would both deliver every message in it; each outbox (each
    worker process, say) needs its own file.
    """


class StoreHookMismatchError(StoreError):
    """The store's file holds messages for another hook than the outbox's client posts to.

    Attributes:
        path: The store's file.
        stored_hook: The hook the file serves, as a URL with the secret shown as ``***``.
        hook: The hook of the client that tried to open it, shown the same way.
    """

    def __init__(self, message: str, *, path: str, stored_hook: str, hook: str) -> None:
        super().__init__(message, path=path)
        self.stored_hook = stored_hook
        self.hook = hook


class StoreUnavailableError(StoreError):
    """The outbox's store (a Redis server) could not be reached, or did not answer in time.

    Raised by ``put`` at once: the message was not accepted (when the answer timed out after
    Redis received the command, it may still be delivered: see ``docs/outbox.md``). The
    ``path`` attribute names the server, without credentials.
    """


class LeaseLostError(StoreError):
    """This process no longer holds the lease on a shared queue: another one delivers it.

    Raised by a shared store's writes made with a fencing token that is not the current one;
    the outbox stops delivering at once, and never records over the new holder.
    """


class StoredState(enum.StrEnum):
    """A stored message's state: what a restart must do with it."""

    QUEUED = "queued"  # send it
    SENDING = "sending"  # at_most_once: it may have been sent, so it is now unknown
    FAILED = "failed"  # a dead letter: refused for good
    UNKNOWN = "unknown"  # a dead letter: may have been posted


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    """One stored message.

    Attributes:
        id: Its id, increasing in the order messages were accepted.
        text: The message.
        state: What a restart does with it.
        expires_at: Wall-clock time (``time.time()``) after which it is dropped unsent, if any.
        reason: Why it is a dead letter, for ``FAILED`` and ``UNKNOWN``.
    """

    id: int
    text: str
    state: StoredState
    expires_at: float | None = None
    reason: str | None = None


@runtime_checkable
class OutboxStore(Protocol):
    """What an :class:`~hookapi.Outbox` needs from a store (one outbox uses a store at a time)."""

    async def open(self) -> list[StoredMessage]:
        """Open the store; return every message it holds, oldest first."""

    async def add(self, text: str, *, expires_at: float | None) -> int:
        """Record a new queued message; return its id only once it is durable."""

    async def update(self, id: int, state: StoredState, *, reason: str | None = None) -> None:
        """Record a message's new state."""

    async def remove(self, id: int) -> None:
        """Forget a message (delivered, dropped, or discarded)."""

    async def aclose(self) -> None:
        """Release what :meth:`open` took; the messages stay for the next :meth:`open`."""


@runtime_checkable
class SharedStore(OutboxStore, Protocol):
    """A store one queue of which many processes share (:class:`~hookapi.RedisStore`).

    Any process adds; one at a time, the holder of the lease, delivers. The outbox uses it
    instead of holding the queue alone: it takes the lease, claims the queue, and records
    every step with the lease's fencing token, so that a process whose lease ended changes
    nothing. MemoryStore and SQLiteStore are not shared: the outbox uses them as before.
    """

    @property
    def lease(self) -> float:
        """Seconds the lease lasts unless renewed (on the event loop's clock)."""

    @property
    def poll_interval(self) -> float:
        """Seconds between two looks for new messages, outcomes and dead letters."""

    async def open_shared(self, hook: HookKey) -> list[StoredMessage]:
        """Connect, bound to ``hook``; return the dead letters, oldest first."""

    async def acquire(self) -> float | None:
        """Take the lease: ``None`` once taken, else seconds until it may be free."""

    async def renew(self) -> bool:
        """Extend the lease; ``False`` if it is lost (or Redis does not answer)."""

    async def release(self) -> None:
        """Give up the lease, if still held, so that another process takes over at once."""

    async def claim(self, after: int) -> list[StoredMessage]:
        """The queued messages with an id above ``after``, oldest first (lease holder only)."""

    async def finish(self, id: int, outcome: str) -> None:
        """Remove a delivered or dropped message; tell ``outcome`` to the process that put it."""

    async def sync(
        self, ids: list[int], version: bytes
    ) -> tuple[bytes, dict[int, str], list[StoredMessage] | None]:
        """The outcomes of ``ids`` known so far, and the dead letters if they changed."""

    async def discard(self, id: int) -> bool:
        """Forget a dead letter; ``False`` if there is none with that id."""

    async def retry(self, id: int, *, expires_at: float | None) -> tuple[int, str] | None:
        """Queue a dead letter again at the end: its new id and text, or ``None``."""


class MemoryStore:
    """Keeps messages in this process only: fast, and gone when the process ends.

    A new outbox given the same ``MemoryStore`` resumes what the last one left, which is all
    the durability it offers; use :class:`~hookapi.SQLiteStore` to survive a restart.
    """

    __slots__ = ("_messages", "_next_id")

    def __init__(self) -> None:
        self._messages: dict[int, StoredMessage] = {}
        self._next_id = 1

    def __repr__(self) -> str:
        return f"<MemoryStore messages={len(self._messages)}>"

    async def open(self) -> list[StoredMessage]:
        """Return the messages a previous outbox left, oldest first."""
        return sorted(self._messages.values(), key=lambda message: message.id)

    async def add(self, text: str, *, expires_at: float | None) -> int:
        """Keep a new queued message and return its id."""
        id = self._next_id
        self._next_id += 1
        self._messages[id] = StoredMessage(
            id=id, text=text, state=StoredState.QUEUED, expires_at=expires_at
        )
        return id

    async def update(self, id: int, state: StoredState, *, reason: str | None = None) -> None:
        """Record a message's new state."""
        old = self._messages[id]
        self._messages[id] = StoredMessage(
            id=id, text=old.text, state=state, expires_at=old.expires_at, reason=reason
        )

    async def remove(self, id: int) -> None:
        """Forget a message."""
        self._messages.pop(id, None)

    async def aclose(self) -> None:
        """Nothing to release."""
