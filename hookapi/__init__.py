"""hookapi: an asyncio client for the Hook API.

Post chat messages into a workspace Desktop as a bot, with nothing but a hook id and secret:
throttled from the service's rate-limit headers, retried safely, and with the secret kept out
of every log, error and repr.
"""

from __future__ import annotations

import typing as _typing

from ._client import AsyncHookClient, ClientOptions, PostResult
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    Delivery,
    HookAPIError,
    InsecureURLError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    QuotaUnavailableError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    WrongEventLoopError,
)
from ._http import CertTypes, InsecureTLSWarning, VerifyTypes
from ._quota import MemoryQuota, QuotaPolicy, QuotaStore, RateLimit
from ._retry import RetryPolicy
from ._secrets import Secret
from ._sync import HookClient
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._http import ConnectionPool
    from ._redis import RedisQuota
    from .outbox import (
        Coalesce,
        DeadLetter,
        LeaseLostError,
        MemoryStore,
        MessageDroppedError,
        Outbox,
        OutboxClosedError,
        OutboxFullError,
        OutboxStore,
        Receipt,
        ReceiptState,
        RedisStore,
        SQLiteStore,
        StoredMessage,
        StoredState,
        StoreError,
        StoreHookMismatchError,
        StoreInUseError,
        StoreUnavailableError,
    )

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncHookClient",
    "AuthenticationError",
    "BadRequestError",
    "CertTypes",
    "ClientClosedError",
    "ClientOptions",
    "Coalesce",
    "ConnectionPool",
    "DeadLetter",
    "Delivery",
    "HookAPIError",
    "HookClient",
    "InsecureTLSWarning",
    "InsecureURLError",
    "InternalServerError",
    "InvalidInputError",
    "LeaseLostError",
    "MemoryQuota",
    "MemoryStore",
    "MessageDroppedError",
    "NotFoundError",
    "Outbox",
    "OutboxClosedError",
    "OutboxFullError",
    "OutboxStore",
    "PermissionDeniedError",
    "PostResult",
    "QuotaPolicy",
    "QuotaStore",
    "QuotaUnavailableError",
    "RateLimit",
    "RateLimitError",
    "Receipt",
    "ReceiptState",
    "RedisQuota",
    "RedisStore",
    "RetryPolicy",
    "SQLiteStore",
    "Secret",
    "ServerError",
    "ServiceUnavailableError",
    "StoreError",
    "StoreHookMismatchError",
    "StoreInUseError",
    "StoreUnavailableError",
    "StoredMessage",
    "StoredState",
    "VerifyTypes",
    "WrongEventLoopError",
    "__version__",
]


#: Names loaded on first use, and the module each comes from: a client that only posts never
#: pays for the outbox, the Redis store or the pool's httpcore path (cold start).
_LAZY = {
    "ConnectionPool": "._http",
    "RedisQuota": "._redis",
    **dict.fromkeys(
        (
            "Coalesce",
            "DeadLetter",
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
            "StoredMessage",
            "StoredState",
            "StoreError",
            "StoreHookMismatchError",
            "StoreInUseError",
            "StoreUnavailableError",
        ),
        ".outbox",
    ),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
