"""The shared outbox store: one hook's queue kept in Redis for a fleet of processes.

Its scripts live beside it as ``.lua`` files; nothing outside this package imports its
private modules.
"""

from __future__ import annotations

from ._store import RedisStore

__all__ = ["RedisStore"]
