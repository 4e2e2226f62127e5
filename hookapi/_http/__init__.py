"""What moves bytes: the transport layer that puts the secret in last, the pool, the connections.

Nothing outside this package imports its private modules; the rest of hookapi uses the names
re-exported here. It may use the quota and the error tree, never the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._loop import current_loop, loop_mismatch
from ._proxy import environment_proxy, proxy_transport
from ._sanitize import RedactedError, sanitized_chain
from ._tls import CertTypes, InsecureTLSWarning, VerifyTypes, tls_context
from ._transport import (
    ATTEMPT_EXTENSION,
    DEADLINE_EXTENSION,
    FIELDS_EXTENSION,
    QUOTA_PASSED_EXTENSION,
    QUOTA_WAIT_EXTENSION,
    RATE_LIMIT_EXTENSION,
    SENDING_EXTENSION,
    WRITE_EXTENSION,
    RateLimitTransport,
    delivery_of,
    reuse_within,
)

if TYPE_CHECKING:
    from ._pool import LLHTTP, ConnectionPool

__all__ = [
    "ATTEMPT_EXTENSION",
    "DEADLINE_EXTENSION",
    "FIELDS_EXTENSION",
    "LLHTTP",
    "QUOTA_PASSED_EXTENSION",
    "QUOTA_WAIT_EXTENSION",
    "RATE_LIMIT_EXTENSION",
    "SENDING_EXTENSION",
    "WRITE_EXTENSION",
    "CertTypes",
    "ConnectionPool",
    "InsecureTLSWarning",
    "RateLimitTransport",
    "RedactedError",
    "VerifyTypes",
    "current_loop",
    "delivery_of",
    "environment_proxy",
    "loop_mismatch",
    "proxy_transport",
    "reuse_within",
    "sanitized_chain",
    "tls_context",
]


def __getattr__(name: str) -> object:
    # The pool is imported on first use: a client given its own transport never pays for it.
    if name in ("ConnectionPool", "LLHTTP"):
        from . import _pool  # noqa: PLC0415

        return getattr(_pool, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
