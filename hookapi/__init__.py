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
    QuotaUnavailableError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from ._quota import MemoryQuota, QuotaPolicy, QuotaStore, RateLimit
from ._redis import RedisQuota
from ._retry import RetryPolicy
from ._secrets import Secret
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncHookClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "Delivery",
    "HookAPIError",
    "InternalServerError",
    "InvalidInputError",
    "MemoryQuota",
    "NotFoundError",
    "PermissionDeniedError",
    "PostResult",
    "QuotaPolicy",
    "QuotaStore",
    "QuotaUnavailableError",
    "RateLimit",
    "RateLimitError",
    "RedisQuota",
    "RetryPolicy",
    "Secret",
    "ServerError",
    "ServiceUnavailableError",
    "__version__",
]
