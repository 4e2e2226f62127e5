"""The in-memory quota store: counts in fixed-size time buckets, constant work per decision.

The service sends no reset time, so the store paces from what it can know: the last
``Remaining`` it can trust, the requests it has started since, and counts of its own requests
in time buckets that it credits back as they leave the hourly and daily windows. Buckets are
released at their *end* plus the window, so a request is never credited back before the
service can have let it go: the estimate may over-count by one bucket's width, never under.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from array import array
from collections import deque
from collections.abc import Callable
from typing import Final

import anyio

from .._frozen import new, slot_setters
from ._headers import RateLimit
from ._loops import current_loop
from ._store import HookKey, HookQuota, NotNow, QuotaAnswer, QuotaPolicy, Reservation

__all__ = ["DAY", "HOUR", "MemoryQuota"]

HOUR: Final = 3600.0
DAY: Final = 86400.0
#: Bucket widths: own answered requests (both windows), and unconfirmed bookings.
_WIDTH: Final = 15.0
_UNCONFIRMED_WIDTH: Final = 60.0
#: The latest event in a bucket is kept as a fraction of the bucket, in this many steps.
_STEPS: Final = 65535


#: A ring starts with this many slots at its first event, and doubles as the span grows.
_FIRST_SIZE: Final = 16
#: Bytes per slot: a count and a latest event per bucket of the span (dense), or the same
#: plus the bucket's index for each bucket that holds an event (sparse).
_DENSE_BYTES: Final = 6
_SPARSE_BYTES: Final = 14
#: What a ring holds before its first event: nothing (shared, never written).
_NO_COUNTS: Final = array("i")
_NO_LAST: Final = array("H")
_NO_BUCKETS: Final = array("q")


class _Ring:
    """Counts of events in buckets of ``width`` seconds, with a running total per window.

    An event at ``t`` falls in bucket ``floor(t / width)``. Each bucket also keeps when its
    latest event happened, rounded *up* to 1/65,535 of the bucket, and the whole bucket leaves
    window ``k`` at that moment plus ``windows[k]`` plus ``margin``: never before any of its
    events may leave the service's window, and at most a fraction of a millisecond after the
    last one does.

    The ring holds the live buckets only, from the oldest still in some window to the newest,
    in whichever of two layouts takes fewer bytes, chosen each time it runs out of room:

    * *dense*: a slot for every bucket of that span (6 bytes each), found by its index; a
      hook that posts in most buckets pays the least this way;
    * *sparse*: a slot for each bucket that holds an event (14 bytes: its index too), in
      order; a hook that posts once an hour holds 24 slots for a day, not 5,763.

    A slot's place in the ring is its *position*: the bucket's index when dense, its rank
    among the buckets ever kept when sparse. The ring takes nothing until the first event,
    then 16 dense slots, and doubles as needed, up to ``longest / width + 3`` slots when
    events span the longest window. When every bucket has left every window it gives its
    slots back. Either layout gives the same answers to every question.

    The caller expires the longest window before each :meth:`add` (as :class:`HookState`
    does), so the live buckets never span more slots than the largest ring has.
    """

    __slots__ = (
        "_buckets",
        "_counts",
        "_delays",
        "_fixed",
        "_last",
        "_max_size",
        "_newest",
        "_ptr",
        "_size",
        "_sparse",
        "_top",
        "_width",
        "totals",
    )

    def __init__(
        self,
        width: float,
        windows: tuple[float, ...],
        margin: float,
        *,
        _initial: int | None = None,
    ) -> None:
        self._width = width
        self._delays = [window + margin for window in windows]
        self._max_size = int(max(windows) // width) + int(margin // width) + 3
        # The oldest live position in each window (None: the window holds nothing).
        self._ptr: list[int | None] = [None] * len(windows)
        # The newest live position, and the newest bucket ever counted (events never go back).
        self._newest = -1
        self._top = -1
        self.totals = [0] * len(windows)
        self._size = 0
        self._sparse = False
        self._counts = _NO_COUNTS
        self._last = _NO_LAST
        self._buckets = _NO_BUCKETS
        # A dense ring of that size from the start that never gives it back (tests compare
        # the ring against the largest one).
        self._fixed = _initial is not None
        if _initial is not None:
            self._resize(min(_initial, self._max_size), 0, -1, sparse=False)

    def index(self, t: float) -> int:
        """The bucket that holds time ``t``."""
        return math.floor(t / self._width)

    def _bucket(self, p: int) -> int:
        """The bucket at position ``p``."""
        return self._buckets[p % self._size] if self._sparse else p

    def _oldest(self) -> int | None:
        """The oldest position still in some window (``None`` if none is)."""
        oldest = None
        for i in self._ptr:
            if i is not None and (oldest is None or i < oldest):
                oldest = i
        return oldest

    def _resize(self, size: int, oldest: int, newest: int, *, sparse: bool) -> None:
        """Move positions ``oldest .. newest`` into a ring of ``size`` slots, same layout."""
        counts, last, buckets, old = self._counts, self._last, self._buckets, self._size
        new_counts = array("i", bytes(4 * size))
        new_last = array("H", bytes(2 * size))
        new_buckets = array("q", bytes(8 * size)) if sparse else _NO_BUCKETS
        i = oldest
        while i <= newest:
            # At most three runs: where neither ring wraps around, slices copy in one go.
            src, dst = i % old, i % size
            run = min(newest + 1 - i, old - src, size - dst)
            new_counts[dst : dst + run] = counts[src : src + run]
            new_last[dst : dst + run] = last[src : src + run]
            if sparse:
                new_buckets[dst : dst + run] = buckets[src : src + run]
            i += run
        self._counts, self._last, self._buckets = new_counts, new_last, new_buckets
        self._size, self._sparse = size, sparse

    def _relayout(self, size: int, oldest: int, newest: int, *, sparse: bool) -> None:
        """Move the buckets that hold events into the other layout, ``size`` slots."""
        kept = [
            (self._bucket(p), self._counts[p % self._size], self._last[p % self._size])
            for p in range(oldest, newest + 1)
            if self._counts[p % self._size]
        ]
        ptr = [None if p is None else self._bucket(p) for p in self._ptr]
        self._counts, self._last, self._buckets = _NO_COUNTS, _NO_LAST, _NO_BUCKETS
        self._size = 0
        self._resize(size, 0, -1, sparse=sparse)
        counts, last, buckets = self._counts, self._last, self._buckets
        for rank, (bucket, count, latest) in enumerate(kept):
            slot = (rank if sparse else bucket) % size
            counts[slot], last[slot] = count, latest
            if sparse:
                buckets[slot] = bucket
        if sparse:
            # Every window's oldest bucket holds events, so it is one of those kept.
            ranks = {bucket: rank for rank, (bucket, _count, _latest) in enumerate(kept)}
            self._ptr = [None if b is None else ranks[b] for b in ptr]
            self._newest = len(kept) - 1
        else:
            self._ptr = ptr
            self._newest = kept[-1][0]

    def _reserve(self, i: int) -> int:
        """Make room for bucket ``i`` (no older than the newest), keeping every live one.

        Returns:
            The position of bucket ``i``.
        """
        oldest = self._oldest()
        size = self._size
        if oldest is None:
            # Nothing live: a dense ring, nothing to move.
            if not size:
                self._resize(_FIRST_SIZE, 0, -1, sparse=False)
            return i
        newest = self._newest
        if not self._sparse:
            if i - oldest < size:
                return i
            entries = sum(1 for p in range(oldest, newest + 1) if self._counts[p % size]) + 1
            first = oldest
            position = i
        else:
            if self._buckets[newest % size] == i:
                return newest
            position = newest + 1
            if position - oldest < size:
                self._buckets[position % size] = i
                return position
            entries = position - oldest + 1
            first = self._buckets[oldest % size]
        dense = _FIRST_SIZE
        while dense < i - first + 1 and dense < self._max_size:
            dense *= 2
        dense = min(dense, self._max_size)
        sparse = _FIRST_SIZE
        while sparse < entries and sparse < self._max_size:
            sparse *= 2
        sparse = min(sparse, self._max_size)
        if not self._fixed and _SPARSE_BYTES * sparse < _DENSE_BYTES * dense:
            if self._sparse:
                self._resize(sparse, oldest, newest, sparse=True)
            else:
                self._relayout(sparse, oldest, newest, sparse=True)
                position = self._newest + 1
            self._buckets[position % sparse] = i
        elif self._sparse:
            self._relayout(dense, oldest, newest, sparse=False)
        else:
            self._resize(dense, oldest, newest, sparse=False)
        return position if self._sparse else i

    def add(self, t: float) -> None:
        """Count one event at ``t`` (never earlier than the events already counted)."""
        i = self.index(t)
        if i < self._top:
            i, step = self._top, _STEPS
        else:
            step = min(_STEPS, math.ceil((t / self._width - i) * _STEPS + 1e-6))
        # Most events fall in the newest bucket (held whenever the ring holds slots).
        p = self._newest if i == self._top and self._size else self._reserve(i)
        slot = p % self._size
        self._counts[slot] += 1
        self._last[slot] = max(self._last[slot], step)
        self._newest = p
        self._top = i
        ptr = self._ptr
        totals = self.totals
        for k in range(len(totals)):
            totals[k] += 1
            if ptr[k] is None:
                ptr[k] = p

    def release_at(self, p: int, k: int) -> float:
        """When the bucket at position ``p`` leaves window ``k``."""
        slot = p % self._size
        bucket = self._buckets[slot] if self._sparse else p
        return (bucket + self._last[slot] / _STEPS) * self._width + self._delays[k]

    def expire(self, now: float, k: int, credit_from: int | None = None) -> int:
        """Drop the buckets that have left window ``k`` by ``now``.

        Returns:
            How many of the dropped events were in buckets ``>= credit_from`` (0 if None).
        """
        i = self._ptr[k]
        if i is None:
            return 0
        counts, size = self._counts, self._size
        release_at = self.release_at
        if release_at(i, k) > now:
            return 0
        oldest = self._oldest()
        credited = dropped = 0
        newest = self._newest
        buckets = self._buckets if self._sparse else None
        while i <= newest and release_at(i, k) <= now:
            count = counts[i % size]
            dropped += count
            if credit_from is not None and (i if buckets is None else buckets[i % size]) >= (
                credit_from
            ):
                credited += count
            i += 1
        # The window's oldest bucket holds events (so it says when the window next changes).
        while i <= newest and not counts[i % size]:
            i += 1
        self.totals[k] -= dropped
        self._ptr[k] = i if i <= newest else None
        still = self._oldest()
        if still is None:
            if not self._fixed:
                # Every bucket has left every window: give the slots back.
                self._size, self._sparse = 0, False
                self._counts, self._last, self._buckets = _NO_COUNTS, _NO_LAST, _NO_BUCKETS
                return credited
            still = newest + 1
        # A slot is free once its bucket has left every window, not just this one.
        last = self._last
        assert oldest is not None
        for p in range(oldest, still):
            counts[p % size] = 0
            last[p % size] = 0
        return credited

    def next_release(self, k: int) -> float:
        """When the oldest bucket still in window ``k`` leaves it (``inf`` if none is)."""
        i = self._ptr[k]
        return math.inf if i is None else self.release_at(i, k)

    def release_time(self, k: int, need: int, credit_from: int | None = None) -> float:
        """When ``need`` more events will have left window ``k`` (``inf`` if never).

        With ``credit_from``, only events in buckets from that one on count.
        """
        i = self._ptr[k]
        if need <= 0:
            return -math.inf
        if i is None:
            return math.inf
        counts, size, got = self._counts, self._size, 0
        if credit_from is not None:
            if not self._sparse:
                i = max(i, credit_from)
            else:
                buckets = self._buckets
                while i <= self._newest and buckets[i % size] < credit_from:
                    i += 1
        while i <= self._newest:
            got += counts[i % size]
            if got >= need:
                return self.release_at(i, k)
            i += 1
        return math.inf

    def clear(self) -> None:
        """Forget every event (and give the slots back)."""
        if self._fixed:
            self._resize(self._size, 0, -1, sparse=False)
        else:
            self._size, self._sparse = 0, False
            self._counts, self._last, self._buckets = _NO_COUNTS, _NO_LAST, _NO_BUCKETS
        self._ptr = [None] * len(self._ptr)
        self._newest = -1
        self._top = -1
        self.totals = [0] * len(self.totals)

    def nbytes(self) -> int:
        """The memory its buckets take."""
        return sum(a.itemsize * len(a) for a in (self._counts, self._last, self._buckets))


_set_probe, _set_token = slot_setters(Reservation, "probe", "token")


class _Token:
    """What the store remembers of one reservation."""

    __slots__ = ("seq", "settled_before", "started_at", "unconfirmed_before")

    def __init__(self, seq: int, started_at: float, settled_before: int, unconfirmed: int) -> None:
        self.seq = seq
        self.started_at = started_at
        self.settled_before = settled_before
        self.unconfirmed_before = unconfirmed


class HookState:
    """The quota of one hook, in one process and event loop.

    Budget, from what it knows (each term applies once its header has been seen):

    * the service's last trusted ``Remaining``, less every request started since, plus each
      own answered request that has since left the hourly window;
    * ``Total-Per-Hour`` less its own requests in the last hour (and in flight);
    * ``Total-Per-Day`` less its own requests in the last day (and in flight).

    Until the first answer, one request goes alone to learn the quota. A ``Remaining`` is
    trusted only from an answer during whose flight no other answer arrived. Requests that
    got no answer count as *unconfirmed* until the next trusted answer, which supersedes
    them. When the budget is spent by requests it cannot see leave (another process's, or
    unconfirmed ones), one probe goes alone on the schedule of the :class:`QuotaPolicy`.

    Every method runs without awaiting anything, so tasks on one event loop need no lock.
    """

    def __init__(
        self, policy: QuotaPolicy, *, clock: Callable[[], float] = anyio.current_time
    ) -> None:
        self._policy = policy
        self._margin = policy.margin
        self._clock = clock
        self._per_hour: int | None = None
        self._per_day: int | None = None
        self._remaining: int | None = None
        self._stale_at = math.inf
        # Nothing leaves a window before this: _expire has nothing to do until then.
        self._expire_at = -math.inf
        self._credit_from: int | None = None
        self._own = _Ring(_WIDTH, (HOUR, DAY), policy.margin)
        self._unconfirmed = _Ring(_UNCONFIRMED_WIDTH, (HOUR, DAY), policy.margin)
        self._in_flight = 0
        self._started = 0
        self._settled = 0
        # Requests that got no answer, ever; and how many of them a trusted answer superseded.
        self._lost = 0
        self._lost_superseded = 0
        self._adopted_seq = 0
        self._adopted_remaining = 0
        self._max_latency = 0.0
        self._known = False
        self._foreign = 0
        self._last_answer_at = -math.inf
        self._blocked_until = -math.inf
        self._probe_due = False
        self._probe_out = False
        self._streak = 0
        self._refusals: deque[float] = deque(maxlen=policy.max_refused_probes_per_hour)

    # What it knows

    @property
    def in_flight(self) -> int:
        """Reservations not yet refunded or settled."""
        return self._in_flight

    def nbytes(self) -> int:
        """The memory its counts take, in bytes (under 64 KiB, whatever the quota or the rate)."""
        return self._own.nbytes() + self._unconfirmed.nbytes()

    def _expire(self, now: float) -> None:
        if now < self._expire_at:
            return
        if now >= self._stale_at:
            self._remaining = None
            self._stale_at = math.inf
        own = self._own
        credited = own.expire(now, 0, self._credit_from)
        if credited and self._remaining is not None:
            self._remaining += credited
        own.expire(now, 1)
        unconfirmed = self._unconfirmed
        unconfirmed.expire(now, 0)
        unconfirmed.expire(now, 1)
        self._expire_at = min(
            self._stale_at,
            own.next_release(0),
            own.next_release(1),
            unconfirmed.next_release(0),
            unconfirmed.next_release(1),
        )

    def _count(self, ring: _Ring, now: float) -> None:
        ring.add(now)
        self._expire_at = min(self._expire_at, ring.next_release(0))

    def _budget(self) -> float:
        budget: float = math.inf
        if self._remaining is not None:
            budget = self._remaining
        flight = self._in_flight
        if self._per_hour is not None:
            used = self._own.totals[0] + self._unconfirmed.totals[0] + flight
            budget = min(budget, self._per_hour - used)
        if self._per_day is not None:
            used = self._own.totals[1] + self._unconfirmed.totals[1] + flight
            budget = min(budget, self._per_day - used)
        return budget

    async def budget(self) -> float:
        """How many requests may start now (``inf`` when nothing limits them)."""
        now = self._clock()
        self._expire(now)
        if now < self._blocked_until or self._probe_due or self._probe_out:
            return 0
        return self._budget()

    def _interval(self) -> float:
        policy = self._policy
        if policy.probe_interval is not None:
            return policy.probe_interval
        if self._per_hour:
            return HOUR / self._per_hour
        return 1.0

    def _credit_time(self, now: float) -> float:
        """The earliest time the budget can reach 1 from requests leaving the windows."""
        times = [now]
        own, flight = self._own, self._in_flight
        if self._remaining is not None and self._remaining < 1:
            need = 1 - self._remaining
            credit = own.release_time(0, need, self._credit_from)
            times.append(min(credit, self._stale_at))
        for k, limit in enumerate((self._per_hour, self._per_day)):
            if limit is None:
                continue
            need = 1 - (limit - own.totals[k] - self._unconfirmed.totals[k] - flight)
            if need <= 0:
                continue
            # Unconfirmed bookings are superseded by the next trusted answer (or a probe).
            when = own.release_time(k, need)
            if math.isinf(when) and need <= own.totals[k] + flight:
                when = now + (HOUR, DAY)[k] + self._margin + _WIDTH
            times.append(when)
        return max(times)

    def _may_probe(self) -> bool:
        # The budget is spent by requests whose return it cannot see: another process's, or
        # its own that were never answered. Its own answered requests it can wait out.
        return self._foreign > 0 or self._lost > self._lost_superseded

    def _next_probe_at(self) -> float:
        at = self._last_answer_at + self._interval()
        refusals = self._refusals
        if len(refusals) == refusals.maxlen:
            at = max(at, refusals[0] + HOUR)
        return at

    # The protocol

    async def reserve(self) -> Reservation | NotNow:
        """Take a slot now if the budget allows it, or say when to ask again."""
        return self.reserve_now()

    def reserve_now(self) -> Reservation | NotNow:
        """:meth:`reserve`, called without a coroutine: the state never awaits anything."""
        now = self._clock()
        self._expire(now)
        if now < self._blocked_until:
            return NotNow(
                retry_in=self._blocked_until - now,
                reason=f"refused {self._streak} time(s) by the service",
            )
        if self._probe_out:
            return NotNow(retry_in=None, reason="a probe request is out")
        if not self._known:
            # Nothing learnt yet: one request goes alone (a probe) to learn the quota.
            return self._grant(now, probe=True)
        if self._probe_due:
            return self._grant(now, probe=True)
        budget = self._budget()
        if budget >= 1:
            return self._grant(now, probe=False)
        when = self._credit_time(now)
        if self._may_probe():
            probe_at = self._next_probe_at()
            if probe_at <= now:
                return self._grant(now, probe=True)
            when = min(when, probe_at)
        return NotNow(retry_in=when - now, reason=self._reason())

    def _grant(self, now: float, *, probe: bool) -> Reservation:
        self._in_flight += 1
        self._started += 1
        if self._remaining is not None:
            self._remaining -= 1
        if probe:
            self._probe_out = True
        reservation = new(Reservation)  # built field by field (see hookapi._frozen)
        _set_probe(reservation, probe)
        _set_token(reservation, _Token(self._started, now, self._settled, self._lost))
        return reservation

    def _reason(self) -> str:
        return (
            f"remaining={self._remaining}, in flight={self._in_flight}, "
            f"per hour={self._per_hour}, per day={self._per_day}"
        )

    async def refund(self, reservation: Reservation) -> None:
        """Give back a reservation whose request never reached the network."""
        self.refund_now(reservation)

    def refund_now(self, reservation: Reservation) -> None:
        """:meth:`refund`, called without a coroutine."""
        self._in_flight -= 1
        if reservation.probe:
            self._probe_out = False
        if self._remaining is not None:
            self._remaining += 1

    async def settle(self, reservation: Reservation, answer: QuotaAnswer | None) -> None:
        """Learn from an answer, or count a request that may have been sent and got none."""
        if answer is None:
            self.settle_now(reservation, None, None)
        else:
            self.settle_now(reservation, answer.status_code, answer.rate_limit, answer.retry_after)

    def settle_now(
        self,
        reservation: Reservation,
        status_code: int | None,
        rate_limit: RateLimit | None,
        retry_after: float | None = None,
    ) -> None:
        """:meth:`settle` with the answer's parts (``status_code`` None: no answer came).

        Called without a coroutine, and without a :class:`QuotaAnswer` to build per message.
        """
        token = reservation.token
        assert isinstance(token, _Token)
        now = self._clock()
        self._expire(now)
        self._in_flight -= 1
        if reservation.probe:
            self._probe_out = False
        if status_code is None:
            self._count(self._unconfirmed, now)
            self._lost += 1
            return
        self._known = True
        self._max_latency = max(self._max_latency, now - token.started_at)
        trusted = token.settled_before == self._settled
        self._settled += 1
        self._last_answer_at = now
        if rate_limit is not None:
            if rate_limit.per_hour is not None:
                self._per_hour = rate_limit.per_hour
            if rate_limit.per_day is not None:
                self._per_day = rate_limit.per_day
        if status_code == 429:
            self._refuse(now, rate_limit, retry_after, probe=reservation.probe)
            return
        self._streak = 0
        self._probe_due = False
        self._count(self._own, now)
        if rate_limit is not None and rate_limit.remaining is not None:
            if trusted or self._remaining is None:
                self._adopt(rate_limit, now, token)
            else:
                self._reconcile(token, rate_limit.remaining)

    def _refuse(
        self, now: float, rate_limit: RateLimit | None, retry_after: float | None, *, probe: bool
    ) -> None:
        policy = self._policy
        self._refusals.append(now)
        self._streak += 1
        # The service's Retry-After is its word; each refused probe doubles the wait.
        doublings = min(self._streak - (0 if probe else 1), 64)
        backoff = min(policy.max_probe_interval, self._interval() * 2**doublings)
        if retry_after is not None and self._streak == 1:
            wait = retry_after
        else:
            wait = max(backoff, retry_after or 0.0)
        blocked = now + wait
        if len(self._refusals) == self._refusals.maxlen:
            blocked = max(blocked, self._refusals[0] + HOUR)
        self._blocked_until = max(self._blocked_until, blocked)
        self._probe_due = True
        remaining = 0
        if rate_limit is not None and rate_limit.remaining is not None:
            remaining = min(remaining, rate_limit.remaining)
        self._remaining = remaining - self._in_flight
        self._stale_at = now + HOUR + self._margin
        self._expire_at = min(self._expire_at, self._stale_at)
        self._credit_from = self._own.index(now) + 1

    def _adopt(self, rate_limit: RateLimit, now: float, token: _Token) -> None:
        remaining = rate_limit.remaining
        assert remaining is not None
        # Requests in flight are assumed not counted yet, and so are those that went
        # unanswered since this one started; the next answer corrects both.
        # Those lost before this request started are in its Remaining, if the service counted
        # them at all; those lost since may be counted after it.
        self._lost_superseded = max(self._lost_superseded, token.unconfirmed_before)
        unanswered = self._lost - self._lost_superseded
        self._remaining = remaining - self._in_flight - unanswered
        self._stale_at = now + HOUR + self._margin
        self._expire_at = min(self._expire_at, self._stale_at)
        self._adopted_seq = self._started
        self._adopted_remaining = remaining
        # Only requests the service still counts can be credited back: those that started
        # less than an hour ago, with the slowest answer seen as the safety margin.
        self._credit_from = self._own.index(now - HOUR + self._max_latency) + 1
        # The service's word supersedes the bookings it never confirmed.
        if self._unconfirmed.totals[1]:
            self._unconfirmed.clear()
        used = rate_limit.used
        if used is None and self._per_hour is not None:
            used = self._per_hour - remaining
        self._foreign = 0 if used is None else max(0, used - self._own.totals[0])

    def _reconcile(self, token: _Token, remaining: int) -> None:
        """Learn from an answer that was overtaken by a newer one."""
        assert self._remaining is not None
        if token.seq <= self._adopted_seq and remaining > self._adopted_remaining:
            # It was in flight when the adopted answer came, yet the service counted it
            # before that one (a higher Remaining): it was subtracted once too often.
            self._remaining += 1
        else:
            self._remaining = min(self._remaining, remaining)


class MemoryQuota:
    """The default quota store: each hook's quota in this process's memory.

    One state per hook and event loop (times come from the loop's clock, so a state never
    crosses loops), held weakly: a hook's state lives as long as some client uses it. Its
    counts take a few hundred bytes after a first request and grow with its live requests:
    a slot per 15-second bucket that holds some, or per bucket of the time they span when that
    is smaller. A hook that posts once an hour holds under 1 KiB of counts for a day; a busy
    one about 42 KiB at most (a day's), whatever the quota or the rate.

    Args:
        policy: How to probe a quota whose return cannot be seen; default ``QuotaPolicy()``.

    Example:
        >>> import hookapi
        >>> quota = hookapi.MemoryQuota(policy=hookapi.QuotaPolicy(max_refused_probes_per_hour=4))
        >>> quota.policy.max_refused_probes_per_hour
        4
    """

    def __init__(self, *, policy: QuotaPolicy | None = None) -> None:
        if policy is not None and not isinstance(policy, QuotaPolicy):
            raise TypeError(f"policy must be a QuotaPolicy, not {type(policy).__name__}.")
        self._policy = policy or QuotaPolicy()
        self._states: weakref.WeakKeyDictionary[
            object, weakref.WeakValueDictionary[HookKey, HookState]
        ] = weakref.WeakKeyDictionary()

    @property
    def policy(self) -> QuotaPolicy:
        """The probing policy of every hook in this store."""
        return self._policy

    def __repr__(self) -> str:
        return f"<MemoryQuota policy={self._policy!r}>"

    def hook(self, key: HookKey) -> HookQuota:
        """The state of hook ``key`` on the running event loop (made on first use)."""
        loop = current_loop()
        states = self._states.get(loop)
        if states is None:
            states = self._states[loop] = weakref.WeakValueDictionary()
        state = states.get(key)
        if state is None:
            # On asyncio the loop's own clock is anyio.current_time() without the lookup of
            # which library runs, paid twice a message otherwise.
            clock = loop.time if isinstance(loop, asyncio.AbstractEventLoop) else anyio.current_time
            state = states[key] = HookState(self._policy, clock=clock)
        return state
