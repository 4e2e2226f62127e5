"""The quota: what the service's rate-limit headers mean and how a hook's quota is paced.

Nothing outside this package imports its private modules; the rest of hookapi uses the names
re-exported here. It never imports the client or the HTTP stack.
"""

from __future__ import annotations

from ._headers import RateLimit, parse_retry_after, rate_limit_of
from ._loops import current_loop
from ._memory import HookState, MemoryQuota
from ._queue import QuotaGate, QuotaWaitTooLong, default_store, gate_for
from ._store import (
    HookKey,
    HookQuota,
    NotNow,
    QuotaAnswer,
    QuotaPolicy,
    QuotaStore,
    Reservation,
)

__all__ = [
    "HookKey",
    "HookQuota",
    "HookState",
    "MemoryQuota",
    "NotNow",
    "QuotaAnswer",
    "QuotaGate",
    "QuotaPolicy",
    "QuotaStore",
    "QuotaWaitTooLong",
    "RateLimit",
    "Reservation",
    "current_loop",
    "default_store",
    "gate_for",
    "parse_retry_after",
    "rate_limit_of",
]
