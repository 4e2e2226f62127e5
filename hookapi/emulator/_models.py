"""The emulator's value objects: a hook, a posted message, a quota snapshot and a fault.

They are frozen so that a test, or a page showing the emulator's state, can hold on to them
without the emulator changing them underneath.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypeAlias

__all__ = [
    "IN_PROCESS_BASE_URL",
    "Fault",
    "FaultKind",
    "Hook",
    "PostedMessage",
    "QuotaState",
    "Window",
]

#: The base URL of hooks reached through :meth:`Emulator.transport`. A ``.localhost`` name is
#: loopback by definition, so the client accepts it over plain http without
#: ``allow_insecure_http``, and a request that escapes the in-process transport cannot carry
#: the secret off the machine.
IN_PROCESS_BASE_URL: Final = "http://emulator.localhost"

#: How quotas are counted: UTC clock hours and days, or the last 3,600 and 86,400 seconds.
Window: TypeAlias = Literal["fixed", "sliding"]

#: An HTTP error status to answer with, ``"drop"`` (close the connection without an answer)
#: or ``"delay"`` (answer late).
FaultKind: TypeAlias = int | Literal["drop", "delay"]


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Hook:
    """A hook on the emulator: its id, its secret, its Desktop, and the URL that reaches it.

    The secret is a credential, so ``repr`` shows ``'***'`` in its place.

    Attributes:
        id: The hook id, a UUID string.
        secret: The hook secret, 64 hex characters.
        desktop: The Desktop the hook posts to.
        base_url: The base URL :attr:`url` is built on (the in-process one by default).
    """

    id: str
    secret: str
    desktop: str
    base_url: str = IN_PROCESS_BASE_URL

    @property
    def url(self) -> str:
        """The full hook URL ``{base_url}/{id}/{secret}``, as a user would copy it."""
        return self.url_for(self.base_url)

    def url_for(self, base_url: str) -> str:
        """The full hook URL on another base, such as a served emulator's ``server.url``."""
        return f"{base_url.rstrip('/')}/{self.id}/{self.secret}"

    def __repr__(self) -> str:
        return (
            f"Hook(id={self.id!r}, secret='***', desktop={self.desktop!r}, "
            f"base_url={self.base_url!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PostedMessage:
    """A message the bot posted to a Desktop.

    Attributes:
        text: The ``message`` field exactly as received.
        received_at: When it arrived, a timezone-aware UTC ``datetime`` read on the emulator's
            clock (so sped up with a :class:`ScaledClock`, virtual under trio's ``MockClock``).
        desktop: The Desktop it was posted to.
        hook_id: The hook that posted it.
        received_monotonic: The same reading in seconds (UTC seconds since the epoch on the
            emulator's clock, which its default and scaled clocks never move backwards): for
            ordering messages and measuring the time between them without ``datetime``
            arithmetic.
    """

    text: str
    received_at: datetime
    desktop: str
    hook_id: str
    received_monotonic: float


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaState:
    """One hook's quota at one moment, as the rate-limit headers would report it.

    Attributes:
        window: ``"fixed"`` or ``"sliding"``.
        per_hour: Requests allowed per hour.
        per_day: Requests allowed per day.
        used_hour: Requests counted in the current hourly window (``X-Rate-Limit-Used``).
        used_day: Requests counted in the current daily window.
    """

    window: Window
    per_hour: int
    per_day: int
    used_hour: int
    used_day: int

    @property
    def remaining_hour(self) -> int:
        """Requests still allowed in the hourly window."""
        return max(0, self.per_hour - self.used_hour)

    @property
    def remaining_day(self) -> int:
        """Requests still allowed in the daily window."""
        return max(0, self.per_day - self.used_day)

    @property
    def remaining(self) -> int:
        """Requests allowed before either window refuses (``X-Rate-Limit-Remaining``)."""
        return min(self.remaining_hour, self.remaining_day)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The four ``X-Rate-Limit-*`` headers, as ASGI header pairs."""
        return [
            (b"x-rate-limit-total-per-hour", b"%d" % self.per_hour),
            (b"x-rate-limit-total-per-day", b"%d" % self.per_day),
            (b"x-rate-limit-used", b"%d" % self.used_hour),
            (b"x-rate-limit-remaining", b"%d" % self.remaining),
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A scripted fault, queued by :meth:`Emulator.fail_next`.

    Attributes:
        kind: The status to answer with, ``"drop"`` or ``"delay"``.
        hook_id: Only this hook's requests take the fault (``None``: any hook's).
        retry_after: The ``Retry-After`` value to send: seconds (rounded up), or a string sent
            as is (to test how a client copes with an HTTP date or garbage); ``None`` sends none.
        headers: Whether the answer carries the ``X-Rate-Limit-*`` headers; ``False`` mimics a
            proxy's error page.
        delay: Seconds a ``"delay"`` fault holds the answer back.
        posted: Whether a ``"drop"`` fault posts the message before dropping the connection.
    """

    kind: FaultKind
    hook_id: str | None = None
    retry_after: float | str | None = None
    headers: bool = True
    delay: float = 0.0
    posted: bool = False

    @property
    def label(self) -> str:
        """The key this fault is counted under in :attr:`Emulator.faults_injected`."""
        return str(self.kind)
