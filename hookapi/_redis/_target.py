"""What both Redis-backed stores check before they talk to Redis: the server and the prefix.

:class:`~hookapi.RedisQuota` and :class:`~hookapi.RedisStore` take the same arguments for
these, so they are checked, and refused, in the same words.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._exceptions import InvalidInputError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisTarget", "check_prefix", "redis_target", "running_trio"]


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The Redis server a store was given: a URL to connect to, or a client to use."""

    #: The server, without credentials (a password is a secret too): for errors and logs.
    where: str
    #: The URL to make a client from, or None when a client was given.
    url: str | None
    #: The client given, which the store never closes; None when a URL was given.
    client: Redis | None


def _where(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or parts.path or "?"
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


def redis_target(owner: str, url_or_client: object) -> RedisTarget:
    """Check what ``owner`` (the store's class name) was given as its Redis server.

    Raises:
        ImportError: redis-py is not installed (the ``redis`` extra).
        InvalidInputError: Neither a redis://, rediss:// or unix:// URL nor a client.
    """
    try:
        import redis.asyncio  # noqa: PLC0415  (an optional extra)
    except ImportError:
        raise ImportError(
            f"{owner} needs redis-py: install the redis extra (pip install 'hookapi[redis]')."
        ) from None
    if isinstance(url_or_client, str):
        if urlsplit(url_or_client).scheme not in ("redis", "rediss", "unix"):
            raise InvalidInputError(
                f"{owner} needs a redis://, rediss:// or unix:// URL, or a "
                "redis.asyncio.Redis client."
            )
        return RedisTarget(where=_where(url_or_client), url=url_or_client, client=None)
    if isinstance(url_or_client, redis.asyncio.Redis):
        kwargs = url_or_client.connection_pool.connection_kwargs
        where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return RedisTarget(where=where, url=None, client=url_or_client)
    raise InvalidInputError(
        f"{owner} takes a Redis URL or a redis.asyncio.Redis client, "
        f"not {type(url_or_client).__name__}."
    )


def check_prefix(prefix: object) -> str:
    """The key prefix, refused if it could break the hash tag that keeps a hook in one slot."""
    if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
        raise InvalidInputError("prefix must be a str without '{' or '}' (the hash tag).")
    return prefix


def running_trio() -> bool:
    """Whether this thread runs trio now (redis-py's client is asyncio-only)."""
    trio = sys.modules.get("trio")  # not imported: not running either
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
