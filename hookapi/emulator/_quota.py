"""Per-hook quota counting over fixed (UTC clock hours and days) or sliding windows.

Pure bookkeeping: every method takes the current time in UTC seconds since the epoch, so the
same code serves the wall clock, a sped-up one, trio's ``MockClock`` and a test that passes
numbers by hand.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from typing import Final

from ._models import QuotaState, Window

__all__ = ["DAY", "HOUR", "FixedWindows", "QuotaCounter", "SlidingWindows", "make_counter"]

HOUR: Final = 3600.0
DAY: Final = 86400.0
# Clock readings are floats, and ``t + 3600 - 3600`` can miss ``t`` by a rounding error, so a
# client that waits exactly Retry-After would find the slot still taken. Boundaries are
# therefore matched to within a microsecond.
_EPSILON: Final = 1e-6


def _index(now: float, span: float) -> int:
    """The number of the fixed window of length ``span`` that holds ``now``."""
    return math.floor((now + _EPSILON) / span)


class QuotaCounter(abc.ABC):
    """Counts one hook's requests, admits or refuses the next, and says when a slot frees."""

    window: Window

    def __init__(self, *, per_hour: int, per_day: int) -> None:
        self.per_hour = per_hour
        self.per_day = per_day

    @abc.abstractmethod
    def used(self, now: float) -> tuple[int, int]:
        """Requests counted in the current hourly and daily windows."""

    @abc.abstractmethod
    def _record(self, now: float) -> None:
        """Count one request at ``now``."""

    @abc.abstractmethod
    def _wait(self, now: float, span: float, limit: int) -> float:
        """Seconds until fewer than ``limit`` requests count in the ``span`` window."""

    def state(self, now: float) -> QuotaState:
        """A snapshot of this hook's quota at ``now``."""
        used_hour, used_day = self.used(now)
        return QuotaState(
            window=self.window,
            per_hour=self.per_hour,
            per_day=self.per_day,
            used_hour=used_hour,
            used_day=used_day,
        )

    def admit(self, now: float) -> bool:
        """Count a request at ``now`` if both windows have room; say whether it was counted."""
        used_hour, used_day = self.used(now)
        if used_hour >= self.per_hour or used_day >= self.per_day:
            return False
        self._record(now)
        return True

    def retry_after(self, now: float) -> int:
        """Whole seconds (rounded up, at least 1) until :meth:`admit` would count a request.

        When both windows are full, a request is admitted only once both have room, so the
        later of the two waits binds.
        """
        used_hour, used_day = self.used(now)
        waits = [0.0]
        if used_hour >= self.per_hour:
            waits.append(self._wait(now, HOUR, self.per_hour))
        if used_day >= self.per_day:
            waits.append(self._wait(now, DAY, self.per_day))
        return max(1, math.ceil(max(waits) - _EPSILON))


class FixedWindows(QuotaCounter):
    """UTC clock hours and days: multiples of 3,600 and 86,400 seconds since the epoch.

    POSIX time leaves leap seconds out, so these multiples are exactly :00 UTC and 00:00 UTC.
    """

    window: Window = "fixed"

    def __init__(self, *, per_hour: int, per_day: int) -> None:
        super().__init__(per_hour=per_hour, per_day=per_day)
        self._hour_index = self._day_index = -math.inf
        self._hour_count = self._day_count = 0

    def _roll(self, now: float) -> None:
        hour_index, day_index = _index(now, HOUR), _index(now, DAY)
        if hour_index != self._hour_index:
            self._hour_index, self._hour_count = hour_index, 0
        if day_index != self._day_index:
            self._day_index, self._day_count = day_index, 0

    def used(self, now: float) -> tuple[int, int]:
        """Requests counted in the clock hour and clock day that hold ``now``."""
        self._roll(now)
        return self._hour_count, self._day_count

    def _record(self, now: float) -> None:
        self._roll(now)
        self._hour_count += 1
        self._day_count += 1

    def _wait(self, now: float, span: float, limit: int) -> float:
        # A fixed window empties all at once, at its end.
        return (_index(now, span) + 1) * span - now


class SlidingWindows(QuotaCounter):
    """The last 3,600 and 86,400 seconds: a request at ``t`` stops counting at ``t + span``."""

    window: Window = "sliding"

    def __init__(self, *, per_hour: int, per_day: int) -> None:
        super().__init__(per_hour=per_hour, per_day=per_day)
        self._hour: deque[float] = deque()
        self._day: deque[float] = deque()

    def _trim(self, now: float) -> None:
        for times, span in ((self._hour, HOUR), (self._day, DAY)):
            while times and times[0] <= now - span + _EPSILON:
                times.popleft()

    def used(self, now: float) -> tuple[int, int]:
        """Requests made in the last hour and the last day before ``now``."""
        self._trim(now)
        return len(self._hour), len(self._day)

    def _record(self, now: float) -> None:
        self._trim(now)
        self._hour.append(now)
        self._day.append(now)

    def _wait(self, now: float, span: float, limit: int) -> float:
        times = self._hour if span == HOUR else self._day
        # Room comes back when the request that brings the count below the limit leaves.
        leaving = times[len(times) - limit]
        return leaving + span - now


def make_counter(window: Window, *, per_hour: int, per_day: int) -> QuotaCounter:
    """A fresh counter for one hook."""
    cls = FixedWindows if window == "fixed" else SlidingWindows
    return cls(per_hour=per_hour, per_day=per_day)
