"""The shared quota: one hook's quota kept in Redis for every process that posts through it.

A store of the quota protocol (``hookapi._quota``) that lives beside it rather than inside,
because it raises the SDK's own errors. Nothing outside this package imports its private
modules; it never imports the client or the HTTP stack.
"""

from __future__ import annotations

from ._store import RedisQuota
from ._target import RedisTarget, check_prefix, redis_target, running_trio

__all__ = ["RedisQuota", "RedisTarget", "check_prefix", "redis_target", "running_trio"]
