"""The outbox: a bot's messages delivered in order, as fast as the quota allows, and kept.

:class:`Outbox` queues messages in front of an :class:`~hookapi.AsyncHookClient` and posts
them with no deadline, one at a time in ``put`` order by default; :class:`SQLiteStore` keeps
them across crashes and restarts; :class:`RedisStore` keeps one queue a fleet of processes
shares. Everything here is re-exported by :mod:`hookapi`; it uses
the client and the client never uses it.
"""

from __future__ import annotations

from ._coalesce import Coalesce, Joiner, join_messages
from ._outbox import Outbox
from ._receipt import (
    DeadLetter,
    MessageDroppedError,
    OutboxClosedError,
    OutboxFullError,
    Receipt,
    ReceiptState,
)
from ._redis import RedisStore
from ._sqlite import SQLiteStore
from ._stores import (
    LeaseLostError,
    MemoryStore,
    OutboxStore,
    StoredMessage,
    StoredState,
    StoreError,
    StoreHookMismatchError,
    StoreInUseError,
    StoreUnavailableError,
)

__all__ = [
    "Coalesce",
    "DeadLetter",
    "Joiner",
    "LeaseLostError",
    "MemoryStore",
    "MessageDroppedError",
    "Outbox",
    "OutboxClosedError",
    "OutboxFullError",
    "OutboxStore",
    "Receipt",
    "ReceiptState",
    "RedisStore",
    "SQLiteStore",
    "StoreError",
    "StoreHookMismatchError",
    "StoreInUseError",
    "StoreUnavailableError",
    "StoredMessage",
    "StoredState",
    "join_messages",
]
