"""The quota: what the service's rate-limit headers mean and how a hook's quota is paced.

Nothing outside this package imports its private modules; the rest of hookapi uses the names
re-exported here. It never imports the client or the HTTP stack.
"""

from __future__ import annotations

from ._headers import RateLimit, parse_retry_after
from ._pacer import Pacer, QuotaWaitTooLong, Ticket
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
    "NotNow",
    "Pacer",
    "QuotaAnswer",
    "QuotaPolicy",
    "QuotaStore",
    "QuotaWaitTooLong",
    "RateLimit",
    "Reservation",
    "Ticket",
    "parse_retry_after",
]
