"""How a hook's quota is paced: the :class:`Pacer`, its tickets, and its refusal to wait too long.

The service sends four ``X-Rate-Limit-*`` headers and no reset time, so :class:`Pacer` paces
from what it can know: the last ``Remaining`` it can trust, the requests it has started since,
and a log of its own requests that it credits back as they leave the hourly and daily windows.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable

import anyio

from ._headers import RateLimit

__all__ = ["Pacer", "QuotaWaitTooLong", "Ticket"]

logger = logging.getLogger("hookapi")

HOUR = 3600.0
DAY = 86400.0
_LOG_CAP = 1_000_000


class QuotaWaitTooLong(Exception):
    """The quota cannot come back before the deadline; ``wait`` is the least time it needs."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


class Ticket:
    """One reserved request: its number, when it started, and what had settled by then."""

    __slots__ = ("seq", "settled_before", "started_at")

    def __init__(self, seq: int, started_at: float, settled_before: int) -> None:
        self.seq = seq
        self.started_at = started_at
        self.settled_before = settled_before


class Pacer:
    """The pacing state of one hook, shared by every task that posts through one client.

    Budget, from what the client knows (each term applies once its header has been seen):

    * the service's last trusted ``Remaining``, less every request started since, plus one for
      each of its own requests that has since left the hourly window;
    * ``Total-Per-Hour`` less its own requests in the last hour (and in flight);
    * ``Total-Per-Day`` less its own requests in the last day (and in flight).

    A ``Remaining`` is trusted only from an answer during whose flight no other answer arrived,
    so an answer overtaken by a newer one can never raise the budget. Own requests are logged
    at the time their answer arrived (the latest the service can have counted them) and leave
    the window ``margin`` seconds after the service's would. After a refusal (429) every task
    waits ``Retry-After`` (or a growing backoff), then one probe request goes alone.

    All state changes are synchronous, so tasks on one event loop need no lock.
    """

    def __init__(
        self,
        *,
        label: str = "",
        margin: float = 0.5,
        probe_delay: float = 1.0,
        max_probe_delay: float = HOUR,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._label = label
        self._margin = margin
        self._probe_delay = probe_delay
        self._max_probe_delay = max_probe_delay
        self._clock = clock
        self._remaining: int | None = None
        self._per_hour: int | None = None
        self._per_day: int | None = None
        # Own counted requests, oldest first: (started_at, when it leaves the hourly window),
        # and when each leaves the daily window. Expiry times are stored, not recomputed, so
        # that the wake-up time and the expiry test can never disagree by a rounding error.
        self._hour_log: deque[tuple[float, float]] = deque()
        self._day_log: deque[float] = deque()
        self._in_flight = 0
        self._started = 0
        self._settled = 0
        # The last adopted answer: the reservations started by then, and its Remaining.
        self._adopted_seq = 0
        self._adopted_remaining = 0
        # A Remaining learnt this long ago says nothing any more: every request it counted
        # has left the hourly window.
        self._stale_at = math.inf
        self._blocked_until = -math.inf
        self._refusals = 0
        self._probe_due = False
        self._changed: anyio.Event | None = None

    @property
    def in_flight(self) -> int:
        """Requests reserved and not yet settled."""
        return self._in_flight

    def budget(self) -> float:
        """How many requests may start now (``inf`` when nothing limits them)."""
        return self._budget(self._clock())

    def _expire(self, now: float) -> None:
        if now >= self._stale_at:
            self._remaining = None
            self._stale_at = math.inf
        while self._hour_log and self._hour_log[0][1] <= now:
            self._hour_log.popleft()
            if self._remaining is not None:
                self._remaining += 1
        while self._day_log and self._day_log[0] <= now:
            self._day_log.popleft()

    def _budget(self, now: float) -> float:
        self._expire(now)
        if now < self._blocked_until:
            return 0
        if self._probe_due:
            return 1 if self._in_flight == 0 else 0
        budget: float = math.inf
        if self._remaining is not None:
            budget = self._remaining
        if self._per_hour is not None:
            budget = min(budget, self._per_hour - len(self._hour_log) - self._in_flight)
        if self._per_day is not None:
            budget = min(budget, self._per_day - len(self._day_log) - self._in_flight)
        return budget

    def _recovery(self, now: float) -> float | None:
        """The earliest time the budget can grow, or ``None`` if only an answer can tell."""
        if now < self._blocked_until:
            return self._blocked_until
        if self._probe_due:
            return None  # the probe in flight will tell
        times = [now]
        hour_times = [expiry for _, expiry in self._hour_log]
        if self._remaining is not None and self._remaining < 1:
            credit = self._credit_time(hour_times, 1 - self._remaining, HOUR, now)
            times.append(min(credit, self._stale_at))
        if self._per_hour is not None:
            need = 1 - (self._per_hour - len(self._hour_log) - self._in_flight)
            if need > 0:
                times.append(self._credit_time(hour_times, need, HOUR, now))
        if self._per_day is not None:
            need = 1 - (self._per_day - len(self._day_log) - self._in_flight)
            if need > 0:
                times.append(self._credit_time(list(self._day_log), need, DAY, now))
        return max(times)

    def _credit_time(self, expiries: list[float], need: int, window: float, now: float) -> float:
        # Requests in flight will be logged no earlier than now, so they come back last.
        if need <= len(expiries):
            return expiries[need - 1]
        if need <= len(expiries) + self._in_flight:
            return now + window + self._margin
        return math.inf

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def try_reserve(self) -> Ticket | None:
        """Reserve a request if the budget allows one now, without waiting."""
        now = self._clock()
        if self._budget(now) < 1:
            return None
        return self._reserve(now)

    def _reserve(self, now: float) -> Ticket:
        self._in_flight += 1
        self._started += 1
        if self._remaining is not None:
            self._remaining -= 1
        return Ticket(self._started, now, self._settled)

    async def acquire(self, *, deadline: float = math.inf) -> Ticket:
        """Reserve one request, waiting for the budget to come back if needed.

        Raises:
            QuotaWaitTooLong: The budget cannot come back before ``deadline``.
        """
        now = self._clock()
        if self._budget(now) >= 1:
            return self._reserve(now)
        while True:
            recovery = self._recovery(now)
            if recovery is not None and recovery > deadline:
                raise QuotaWaitTooLong(recovery - now)
            wake_at = deadline if recovery is None else recovery
            reason = self._reason()
            logger.info(
                "hookapi: throttling %s: waiting up to %.3f s for the quota (%s)",
                self._label,
                wake_at - now,
                reason,
                extra={"hookapi_event": "throttle", "hookapi_delay": wake_at - now},
            )
            if self._changed is None:
                self._changed = anyio.Event()
            changed = self._changed
            with anyio.move_on_after(max(0.0, wake_at - now)):
                await changed.wait()
            now = self._clock()
            if self._budget(now) >= 1:
                return self._reserve(now)
            if now >= deadline:
                raise QuotaWaitTooLong(max(0.0, (self._recovery(now) or now) - now))

    def _reason(self) -> str:
        if self._blocked_until > -math.inf and self._refusals:
            return f"refused {self._refusals} time(s) by the service"
        return (
            f"remaining={self._remaining}, in flight={self._in_flight}, "
            f"per hour={self._per_hour}, per day={self._per_day}"
        )

    def release(self, ticket: Ticket, *, sent: bool) -> None:
        """Settle a request that got no answer.

        Args:
            ticket: What :meth:`acquire` returned.
            sent: Whether the request may have reached the service (then it counts).
        """
        now = self._clock()
        self._in_flight -= 1
        if sent:
            self._settled += 1
            self._log(ticket, now)
        elif self._remaining is not None:
            self._remaining += 1
        self._notify()

    def settle(
        self,
        ticket: Ticket,
        rate_limit: RateLimit | None,
        *,
        refused: bool,
        retry_after: float | None = None,
    ) -> None:
        """Learn from an answer: its rate-limit headers, and whether it was a 429 refusal."""
        now = self._clock()
        self._in_flight -= 1
        trusted = ticket.settled_before == self._settled
        self._settled += 1
        if rate_limit is not None:
            if rate_limit.per_hour is not None:
                self._per_hour = rate_limit.per_hour
            if rate_limit.per_day is not None:
                self._per_day = rate_limit.per_day
        if refused:
            self._refuse(now, rate_limit, retry_after)
        else:
            self._refusals = 0
            self._probe_due = False
            self._log(ticket, now)
            if rate_limit is not None and rate_limit.remaining is not None:
                if trusted or self._remaining is None:
                    self._adopt(rate_limit.remaining, now)
                else:
                    self._reconcile(ticket, rate_limit.remaining)
        self._notify()

    def _refuse(self, now: float, rate_limit: RateLimit | None, retry_after: float | None) -> None:
        self._refusals += 1
        if retry_after is None:
            retry_after = min(self._max_probe_delay, self._probe_delay * 2 ** (self._refusals - 1))
        self._blocked_until = max(self._blocked_until, now + retry_after)
        self._probe_due = True
        remaining = 0
        if rate_limit is not None and rate_limit.remaining is not None:
            remaining = min(remaining, rate_limit.remaining)
        self._remaining = remaining - self._in_flight
        self._stale_at = now + HOUR + self._margin

    def _adopt(self, remaining: int, now: float) -> None:
        # Requests that may already have left the service's window must not be credited again.
        cut = now - HOUR
        while self._hour_log and self._hour_log[0][0] <= cut:
            self._hour_log.popleft()
        # Every request still in flight is assumed not counted yet; _reconcile corrects that.
        self._remaining = remaining - self._in_flight
        self._stale_at = now + HOUR + self._margin
        self._adopted_seq = self._started
        self._adopted_remaining = remaining

    def _reconcile(self, ticket: Ticket, remaining: int) -> None:
        """Learn from an answer that was overtaken by a newer one."""
        assert self._remaining is not None
        if ticket.seq <= self._adopted_seq and remaining > self._adopted_remaining:
            # It was in flight when the adopted answer came, yet the service counted it
            # before that one (a higher Remaining): it was subtracted once too often.
            self._remaining += 1
        else:
            self._remaining = min(self._remaining, remaining)

    def _log(self, ticket: Ticket, now: float) -> None:
        # Keep the logs only while they can matter, and never longer than the quota they track.
        if self._remaining is not None or self._per_hour is not None:
            self._hour_log.append((ticket.started_at, now + HOUR + self._margin))
            if len(self._hour_log) > _LOG_CAP:
                self._hour_log.popleft()
        if self._per_day is not None:
            self._day_log.append(now + DAY + self._margin)
            if len(self._day_log) > max(_LOG_CAP, 2 * self._per_day):
                self._day_log.popleft()
