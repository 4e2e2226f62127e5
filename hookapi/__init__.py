"""hookapi: an asyncio client for the Hook API.

Post chat messages into a workspace Desktop as a bot, with nothing but a hook id and secret:
throttled from the service's rate-limit headers, retried safely, and with the secret kept out
of every log, error and repr.
"""

from __future__ import annotations

from ._client import AsyncHookClient, PostResult
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
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from ._quota import RateLimit
from ._retry import RetryPolicy
from ._secrets import Secret
from ._version import __version__
from .outbox import (
    DeadLetter,
    MemoryStore,
    MessageDroppedError,
    Outbox,
    OutboxClosedError,
    OutboxFullError,
    OutboxStore,
    Receipt,
    ReceiptState,
    SQLiteStore,
    StoredMessage,
    StoredState,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncHookClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "DeadLetter",
    "Delivery",
    "HookAPIError",
    "InternalServerError",
    "InvalidInputError",
    "MemoryStore",
    "MessageDroppedError",
    "NotFoundError",
    "Outbox",
    "OutboxClosedError",
    "OutboxFullError",
    "OutboxStore",
    "PermissionDeniedError",
    "PostResult",
    "RateLimit",
    "RateLimitError",
    "Receipt",
    "ReceiptState",
    "RetryPolicy",
    "SQLiteStore",
    "Secret",
    "ServerError",
    "ServiceUnavailableError",
    "StoredMessage",
    "StoredState",
    "__version__",
]
