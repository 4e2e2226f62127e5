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
from ._redis import RedisQuota
from ._retry import RetryPolicy
from ._secrets import Secret
from ._sync import HookClient
from ._version import __version__
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

if _typing.TYPE_CHECKING:
    from ._http import ConnectionPool

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


def __getattr__(name: str) -> object:
    # The pool (and httpcore, which pulls in trio when installed) loads on first use only.
    if name == "ConnectionPool":
        from ._http import ConnectionPool  # noqa: PLC0415

        return ConnectionPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
