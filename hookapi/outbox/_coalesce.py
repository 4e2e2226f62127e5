"""Digests: how an outbox folds a backlog into fewer messages when the quota cannot keep up.

A :class:`Coalesce` option turns it on. The outbox then spends the hook's quota like a token
bucket (``burst`` messages at once, one more every ``interval`` seconds); while more messages
wait than it has tokens for, it joins consecutive ones into one digest, no larger than
``max_bytes``, with what ``join`` returns. Folding happens at send time, so the store keeps
every message until the digest carrying it is posted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .._exceptions import InvalidInputError
from .._validate import encode_message

if TYPE_CHECKING:
    from .._quota import RateLimit
    from ._receipt import Receipt

__all__ = [
    "DEFAULT_DIGEST_BYTES",
    "Coalesce",
    "Joiner",
    "TokenBucket",
    "body_size",
    "checked_join",
    "join_messages",
]

#: The largest request body a digest may have by default. The Hook API documents no length
#: limit; the emulator refuses bodies over 64 KiB, and a chat message far shorter still reads.
DEFAULT_DIGEST_BYTES: Final = 16 * 1024

#: Joins the waiting messages (oldest first, at least two) into one digest of at most
#: ``max_bytes`` of request body; returns its text and how many of them (a prefix) it carries.
Joiner = Callable[[Sequence["Receipt"], int], tuple[str, int]]

_SEPARATOR: Final = "\n\n"


def body_size(text: str) -> int:
    """The size in bytes of the request body that posts ``text``."""
    return len(encode_message(text))


def join_messages(messages: Sequence[Receipt], max_bytes: int) -> tuple[str, int]:
    """The default :data:`Joiner`: as many whole messages as fit, separated by blank lines.

    Nothing is summarised away: the messages that do not fit stay queued for the next
    digest, so a bot's every message still arrives word for word.
    """
    texts: list[str] = []
    for receipt in messages:
        candidate = _SEPARATOR.join([*texts, receipt.text])
        if texts and body_size(candidate) > max_bytes:
            break
        texts.append(receipt.text)
    return _SEPARATOR.join(texts), len(texts)


def checked_join(join: Joiner, run: Sequence[Receipt], max_bytes: int) -> tuple[str, int]:
    """Call ``join``; raise ``ValueError`` when its answer breaks the :data:`Joiner` contract."""
    text, count = join(run, max_bytes)
    said: object = count  # a user's callable may return anything
    if not isinstance(said, int) or not 1 <= count <= len(run):
        raise ValueError(f"it said its digest carries {count!r} of {len(run)} messages")
    if count > 1 and body_size(text) > max_bytes:
        raise ValueError(f"its digest is larger than max_bytes ({max_bytes})")
    return text, count


@dataclass(frozen=True, slots=True, kw_only=True)
class Coalesce:
    """Fold a backlog into digests: the ``coalesce=`` option of :class:`~hookapi.Outbox`.

    Attributes:
        max_bytes: Request body bytes a digest may have at most (the message as JSON).
        burst: Messages the outbox may post back to back before it paces itself.
        interval: Seconds between messages once the burst is spent; ``None``: the hook's
            pace, ``3600 / per_hour`` from its rate-limit headers (60 s until they are seen).
        join: Builds a digest from the waiting messages (see
            :data:`~hookapi.outbox.Joiner`); the default,
            :func:`~hookapi.outbox.join_messages`, concatenates whole messages.

    Example:
        >>> Coalesce(burst=5).max_bytes
        16384
    """

    max_bytes: int = DEFAULT_DIGEST_BYTES
    burst: int = 3
    interval: float | None = None
    join: Joiner = field(default=join_messages)

    def __post_init__(self) -> None:
        for name in ("max_bytes", "burst"):
            value: object = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"Coalesce.{name} must be an int >= 1, not {value!r}.")
        interval: object = self.interval
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval < math.inf
        ):
            raise InvalidInputError(
                f"Coalesce.interval must be a positive number of seconds, not {interval!r}."
            )
        if not callable(self.join):
            raise InvalidInputError("Coalesce.join must be callable.")

    def pace(self, rate_limit: RateLimit | None) -> float:
        """Seconds between messages once the burst is spent, given the hook's headers."""
        if self.interval is not None:
            return float(self.interval)
        if rate_limit is not None and rate_limit.per_hour:
            return 3600.0 / rate_limit.per_hour
        return 60.0


class TokenBucket:
    """The outbox's share of the quota while coalescing: ``burst`` tokens, one back per pace."""

    __slots__ = ("_at", "_burst", "_tokens")

    def __init__(self, burst: int) -> None:
        self._burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def available(self, now: float, pace: float) -> float:
        """Tokens there are at ``now`` (refilled at one per ``pace`` seconds, up to the burst)."""
        if self._at is not None:
            self._tokens = min(float(self._burst), self._tokens + (now - self._at) / pace)
        self._at = now
        return self._tokens

    def wait_time(self, now: float, pace: float) -> float:
        """Seconds from ``now`` until a whole token is there."""
        missing = 1.0 - self.available(now, pace)
        return max(0.0, missing * pace)

    def take(self, now: float, pace: float) -> None:
        """Spend one token (the caller waited for :meth:`wait_time`)."""
        self._tokens = max(0.0, self.available(now, pace) - 1.0)
