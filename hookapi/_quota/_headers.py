"""What the service's rate-limit headers say: the :class:`RateLimit` value and pure parsers.

The service sends four ``X-Rate-Limit-*`` headers on every answer (and may add ``Retry-After``);
any of them can be missing or malformed, so every parser here returns ``None`` rather than raise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from .._frozen import new, slot_setters

__all__ = ["RateLimit", "parse_retry_after"]

_MAX_COUNT = 10**12


def _parse_count(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    count = int(value)
    return count if count < _MAX_COUNT else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """The service's rate-limit headers from one answer.

    A header that is missing or malformed gives ``None`` for its field; parsing never raises.

    Attributes:
        per_hour: ``X-Rate-Limit-Total-Per-Hour``: requests allowed per hour.
        per_day: ``X-Rate-Limit-Total-Per-Day``: requests allowed per day.
        used: ``X-Rate-Limit-Used``: requests used in this context.
        remaining: ``X-Rate-Limit-Remaining``: requests remaining in this context.
    """

    per_hour: int | None = None
    per_day: int | None = None
    used: int | None = None
    remaining: int | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        """Parse the four headers; ``None`` when the answer carried none of them.

        Args:
            headers: The answer's headers; names are matched case-insensitively.

        Example:
            >>> RateLimit.from_headers({"X-Rate-Limit-Remaining": "7", "X-Rate-Limit-Used": "x"})
            RateLimit(per_hour=None, per_day=None, used=None, remaining=7)
        """
        found: dict[str, str] = {}
        if isinstance(headers, httpx.Headers):
            # One pass over the raw pairs: much cheaper than four case-insensitive lookups.
            for raw_name, raw_value in headers.raw:
                if raw_name[:13].lower() == b"x-rate-limit-":
                    key = raw_name[13:].lower().decode("latin-1")
                    found.setdefault(key, raw_value.decode("latin-1"))
        else:
            for name, value in headers.items():
                lowered = str(name).lower()
                if lowered.startswith("x-rate-limit-"):
                    found.setdefault(lowered[13:], value)
        if not found:
            return None
        return cls(
            per_hour=_parse_count(found.get("total-per-hour")),
            per_day=_parse_count(found.get("total-per-day")),
            used=_parse_count(found.get("used")),
            remaining=_parse_count(found.get("remaining")),
        )


def rate_limit_of(found: dict[bytes, bytes]) -> RateLimit | None:
    """:meth:`RateLimit.from_headers` for values already picked out of the raw header lines.

    Args:
        found: The first value of each ``X-Rate-Limit-*`` header, keyed by the lower-case
            rest of its name (the connection collects them while it parses the head).
    """
    if not found:
        return None
    get = found.get
    limit = new(RateLimit)  # built field by field (see hookapi._frozen): once per answer
    _set_per_hour(limit, _raw_count(get(b"total-per-hour")))
    _set_per_day(limit, _raw_count(get(b"total-per-day")))
    _set_used(limit, _raw_count(get(b"used")))
    _set_remaining(limit, _raw_count(get(b"remaining")))
    return limit


_set_per_hour, _set_per_day, _set_used, _set_remaining = slot_setters(
    RateLimit, "per_hour", "per_day", "used", "remaining"
)


def _raw_count(value: bytes | None) -> int | None:
    # bytes.isdigit() is ASCII digits only; anything else goes the way from_headers takes it.
    if value is None:
        return None
    if value.isdigit() and len(value) <= 12:
        return int(value)
    return _parse_count(value.decode("latin-1"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` (delay seconds or an HTTP-date) into seconds from now.

    Args:
        value: The header's value, or ``None``.
        now: The wall-clock time in seconds since the epoch (for HTTP-dates); default: now.

    Returns:
        Seconds to wait (never negative), or ``None`` when missing or malformed.

    Example:
        >>> parse_retry_after("120"), parse_retry_after("soon")
        (120.0, None)
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None  # HTTP-dates are always GMT; a zoneless one is not a valid HTTP-date
    if now is None:
        import time  # noqa: PLC0415

        now = time.time()
    return max(0.0, when.timestamp() - now)
