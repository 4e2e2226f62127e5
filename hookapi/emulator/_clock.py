"""What the emulator reads time from: UTC seconds since the epoch, from the loop or sped up.

Fixed quota windows are UTC clock hours and days, as the service's are, so a clock reads as
wall time. The two clocks here read the wall clock once, as their origin, and from then on
advance with a monotonic timer (the event loop's, or ``time.monotonic``), so that setting the
system clock never moves a window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Protocol

import anyio

__all__ = ["MAX_SCALE", "Clock", "LoopClock", "ScaledClock", "check_scale", "to_utc"]

#: The fastest a :class:`ScaledClock` may run. Past it, a few real minutes would carry the
#: clock beyond the year 9999, where ``datetime`` (and so ``received_at``) ends.
MAX_SCALE: Final = 1e9


class Clock(Protocol):
    """What the emulator reads time from: any callable returning UTC seconds since the epoch.

    Fixed windows start where these seconds are multiples of 3,600 (hours, at :00 UTC) and
    86,400 (days, at 00:00 UTC), and ``PostedMessage.received_at`` is the reading as a UTC
    ``datetime``. A clock that starts at 0 (a hand-moved one in a test) is read as
    1970-01-01 00:00 UTC, so its multiples of 3,600 are still the window boundaries.
    """

    def __call__(self) -> float:
        """The time now, in seconds since 1970-01-01 00:00 UTC."""
        ...


def check_scale(value: object) -> float:
    """Return ``value`` as a float if it is a finite speed-up above 0 and at most 1e9."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_SCALE
    ):
        raise ValueError(f"scale must be a finite number above 0 and at most 1e9, not {value!r}.")
    return float(value)


def _check_start(start: object) -> float:
    if not isinstance(start, datetime) or start.utcoffset() is None:
        raise ValueError(f"start must be a timezone-aware datetime, not {start!r}.")
    return start.timestamp()


def to_utc(seconds: float) -> datetime:
    """A clock reading as a timezone-aware UTC ``datetime``."""
    return datetime.fromtimestamp(seconds, UTC)


class LoopClock:
    """The running event loop's clock, read as UTC: the emulator's default clock.

    The first reading in a loop takes the wall-clock time (or ``start``) as its origin; from
    then on the clock advances with the loop's, so trio's ``MockClock`` or
    :class:`hookapi.testing.VirtualTimeEventLoop` drive its windows. Outside a running loop
    (after ``anyio.run``, in a sync test), it stands still at its latest reading.

    Args:
        start: The UTC time of the first reading (default: the wall clock's time then). A test
            that wants its loop's start at the top of an hour passes one.
    """

    def __init__(self, *, start: datetime | None = None) -> None:
        self._start = None if start is None else _check_start(start)
        self._offset: float | None = None
        self._last: float | None = None

    def __repr__(self) -> str:
        return "<LoopClock>"

    def __call__(self) -> float:
        """The time now, in UTC seconds since the epoch."""
        try:
            loop_now = anyio.current_time()
        except RuntimeError:  # anyio's NoEventLoopError (or sniffio's error before 4.11)
            if self._last is not None:
                return self._last
            return time.time() if self._start is None else self._start
        if self._offset is None:
            origin = time.time() if self._start is None else self._start
            self._offset = origin - loop_now
        self._last = loop_now + self._offset
        return self._last


class ScaledClock:
    """UTC time that runs ``scale`` times faster than real time, from the wall clock's now.

    Give it to an emulator that other processes reach over a socket (``hookapi serve
    --time-scale``), so that an hour of quota passes in ``3600 / scale`` real seconds while
    the server's sockets keep real-time timeouts. Its readings are UTC, so fixed windows still
    turn at :00 of its (sped-up) hours.

    Args:
        scale: How much faster than real time it runs (1: real time; at most 1e9).
        start: The UTC time it starts at (default: the wall clock's time now).
        timer: The monotonic seconds it scales (default ``time.monotonic``); tests pass a fake
            one to move the clock without waiting.

    Example:
        >>> from datetime import UTC, datetime
        >>> real = [0.0]
        >>> clock = ScaledClock(3600, start=datetime(2026, 1, 1, tzinfo=UTC), timer=lambda: real[0])
        >>> real[0] = 1.5  # one and a half real seconds later
        >>> datetime.fromtimestamp(clock(), UTC).isoformat()
        '2026-01-01T01:30:00+00:00'
    """

    def __init__(
        self,
        scale: float,
        *,
        start: datetime | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scale = check_scale(scale)
        self._timer = timer
        self._timer_origin = timer()
        self._origin = time.time() if start is None else _check_start(start)

    def __repr__(self) -> str:
        return f"<ScaledClock scale={self.scale:g} start={self.start.isoformat()}>"

    @property
    def start(self) -> datetime:
        """The UTC time the clock started at."""
        return to_utc(self._origin)

    def __call__(self) -> float:
        """The time now, in UTC seconds since the epoch."""
        return self._origin + (self._timer() - self._timer_origin) * self.scale
