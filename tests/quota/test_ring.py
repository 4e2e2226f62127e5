"""The in-memory store's bucket ring: as small as its events need, same answers as a full one.

A ring starts with no slots, takes 16 at its first event and doubles as it needs room, keeping
a slot per bucket of its span (dense) or per bucket that holds an event (sparse), whichever
takes fewer bytes. These tests hold it to a dense ring that has its largest size from the
start: every count, release time and credit must be the same, under any sequence of events;
and to the events themselves: no window ever counts fewer than the service's would.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Coroutine
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from hookapi._quota import HookState, QuotaAnswer, QuotaPolicy, RateLimit, _memory
from hookapi._quota._memory import _UNCONFIRMED_WIDTH, _WIDTH, DAY, HOUR, _Ring

MARGIN = QuotaPolicy().margin
#: Every ring the store builds (own requests, unconfirmed ones), and a small one that wraps
#: around and reaches its largest size within a few dozen events.
CONFIGS = [
    (_WIDTH, (HOUR, DAY), MARGIN),
    (_UNCONFIRMED_WIDTH, (HOUR, DAY), MARGIN),
    (1.0, (10.0, 100.0), 0.5),
]
FULL_OWN = 6 * (int(DAY // _WIDTH) + 3)
FULL_UNCONFIRMED = 6 * (int(DAY // _UNCONFIRMED_WIDTH) + 3)


def done(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a store coroutine that never awaits (as every ``HookState`` method is)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the store awaited")


def traced(build: Any) -> tuple[Any, int]:
    """What ``build()`` returns, and the bytes it allocated in the store's module."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        made = build()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        only = [tracemalloc.Filter(True, _memory.__file__)]
    grown = after.filter_traces(only).compare_to(before.filter_traces(only), "filename")
    return made, sum(stat.size_diff for stat in grown)


def test_a_fresh_ring_holds_no_buckets() -> None:
    ring, allocated = traced(lambda: _Ring(_WIDTH, (HOUR, DAY), MARGIN))
    assert ring.nbytes() == 0
    assert allocated < 512
    assert ring.totals == [0, 0]
    assert ring.next_release(0) == ring.next_release(1) == float("inf")


def test_a_ring_after_one_event_is_small() -> None:
    def build() -> _Ring:
        ring = _Ring(_WIDTH, (HOUR, DAY), MARGIN)
        ring.add(1000.0)
        return ring

    ring, allocated = traced(build)
    assert ring.nbytes() == 16 * 6
    assert allocated < 1024  # a full ring took 34,578 bytes
    assert ring.totals == [1, 1]


def test_a_hook_state_after_one_answer_is_small() -> None:
    def build() -> HookState:
        state = HookState(QuotaPolicy(), clock=lambda: 5.0)
        rate = RateLimit(per_hour=100, per_day=1000, remaining=99)
        done(state.settle(done(state.reserve()), QuotaAnswer(status_code=200, rate_limit=rate)))
        return state

    state, allocated = traced(build)
    assert state.nbytes() == 16 * 6
    assert allocated < 4096  # counts of a full day took 43,236 bytes


def test_the_ring_gives_its_slots_back_when_everything_has_left() -> None:
    ring = _Ring(_WIDTH, (HOUR, DAY), MARGIN)
    for n in range(300):  # 300 buckets: 512 slots
        ring.add(n * _WIDTH)
    assert ring.nbytes() == 512 * 6
    later = 300 * _WIDTH + DAY + MARGIN
    assert ring.expire(later, 0) == 0
    assert ring.nbytes() == 512 * 6  # still in the day
    ring.expire(later, 1)
    assert ring.totals == [0, 0]
    assert ring.nbytes() == 0
    ring.add(later)
    assert ring.totals == [1, 1]
    assert ring.nbytes() == 16 * 6


def test_clear_returns_to_no_buckets() -> None:
    ring = _Ring(_WIDTH, (HOUR, DAY), MARGIN)
    for n in range(100):
        ring.add(n * _WIDTH)
    ring.clear()
    assert ring.nbytes() == 0
    assert ring.totals == [0, 0]
    ring.add(2000.0)
    assert ring.totals == [1, 1]
    full = _Ring(_WIDTH, (HOUR, DAY), MARGIN, _initial=10**9)
    full.add(2000.0)
    assert ring.next_release(0) == full.next_release(0) >= 2000.0 + HOUR + MARGIN


def test_a_full_day_of_buckets_stays_under_64_kib() -> None:
    # The worst case: one request answered and one unanswered in every bucket of a day.
    state = HookState(QuotaPolicy(), clock=lambda: now)
    rate = RateLimit(per_hour=10**6, per_day=10**7)
    answered = QuotaAnswer(status_code=200, rate_limit=rate)
    now = 0.0
    while now < 2 * DAY:
        done(state.settle(done(state.reserve()), answered))
        done(state.settle(done(state.reserve()), None))
        now += _WIDTH / 2
    assert state.nbytes() == FULL_OWN + FULL_UNCONFIRMED
    assert state.nbytes() < 64 * 1024


def test_a_quiet_day_takes_a_slot_per_request() -> None:
    # One request an hour: 24 buckets with events in a span of 5,521, not 5,521 slots.
    ring = _Ring(_WIDTH, (HOUR, DAY), MARGIN)
    for n in range(24):
        ring.expire(n * HOUR, 1)
        ring.expire(n * HOUR, 0)
        ring.add(n * HOUR)
    assert ring.totals == [2, 24]  # the hour before's stays the margin longer
    assert ring.nbytes() == 32 * 14  # a dense ring of that span took 34,578 bytes
    ring.expire(24 * HOUR + MARGIN + _WIDTH, 1)
    assert ring.totals[1] == 23  # the first request has left the day


def test_a_hook_state_after_a_quiet_day_is_under_4_kib() -> None:
    now = 0.0

    def build() -> HookState:
        nonlocal now
        state = HookState(QuotaPolicy(), clock=lambda: now)
        rate = RateLimit(per_hour=100, per_day=30, remaining=99)
        for _ in range(24):
            answer = QuotaAnswer(status_code=200, rate_limit=rate)
            done(state.settle(done(state.reserve()), answer))
            now += HOUR
        return state

    state, allocated = traced(build)
    assert done(state.budget()) == 30 - 24  # the day still counts every request
    assert state.nbytes() == 32 * 14
    assert allocated < 4096  # the ring alone took 34,578 bytes


def test_a_ring_changes_layout_both_ways_with_the_same_answers() -> None:
    # Busy for an hour (dense), quiet for hours (sparse), busy again (dense), quiet again.
    width, windows = _WIDTH, (HOUR, DAY)
    grown = _Ring(width, windows, MARGIN)
    full = _Ring(width, windows, MARGIN, _initial=10**9)
    layouts = []
    now = 0.0
    for gap, events in [(5.0, 720), (HOUR, 6), (2.0, 7200), (HOUR, 30)]:
        for _ in range(events):
            now += gap
            for ring in (grown, full):
                ring.expire(now, 1)
                ring.expire(now, 0)
                ring.add(now)
            same(grown, full, 2, FULL_OWN)
        layouts.append(grown._sparse)
    assert layouts == [False, True, False, True]
    assert grown.nbytes() < full.nbytes()


# Ops, with times as fractions of the longest window (so every ring grows to its largest):
# ("add", dt) moves the clock on and counts an event, expiring every window first as HookState
# does; ("expire", dt, k, back) moves the clock on and expires window k, crediting from
# ``back`` buckets before now; ("ask", need, k, back) asks when ``need`` events will leave.
ADD = st.tuples(
    st.just("add"),
    st.one_of(st.floats(0, 0.005), st.floats(0, 0.1), st.floats(0, 0.6), st.floats(0, 0.0001)),
)
#: A burst: many events close together (a ring turns dense), after which quiet ones turn it
#: sparse again.
BURST = st.integers(1, 600).map(lambda n: ("burst", n))
EXPIRE = st.tuples(st.just("expire"), st.floats(0, 0.5), st.integers(0, 1), st.integers(-1, 6000))
ASK = st.tuples(st.just("ask"), st.integers(-1, 50), st.integers(0, 1), st.integers(-1, 6000))
CLEAR = st.tuples(st.just("clear"))
OPS = st.lists(st.one_of(ADD, ADD, ADD, ADD, BURST, EXPIRE, ASK, CLEAR), max_size=150)


def same(grown: _Ring, full: _Ring, windows: int, full_bytes: int) -> None:
    assert grown.totals == full.totals
    for k in range(windows):
        assert grown.next_release(k) == full.next_release(k)
        for need in (1, 2, 5, grown.totals[k]):
            assert grown.release_time(k, need) == full.release_time(k, need)
    assert grown.nbytes() <= full.nbytes() == full_bytes


@settings(max_examples=300, deadline=None)
@given(config=st.sampled_from(CONFIGS), ops=OPS, start=st.floats(0, 10**6))
def test_growing_keeps_every_answer_of_a_full_ring(
    config: tuple[float, tuple[float, float], float], ops: list[tuple[Any, ...]], start: float
) -> None:
    width, windows, margin = config
    grown = _Ring(width, windows, margin)
    full = _Ring(width, windows, margin, _initial=10**9)
    full_bytes = 6 * (int(windows[1] // width) + int(margin // width) + 3)
    assert full.nbytes() == full_bytes
    now = start
    for op in ops:
        if op[0] in ("add", "burst"):
            steps = [op[1] * windows[1]] if op[0] == "add" else [width * 0.9] * op[1]
            for step in steps:
                now += step
                for k in range(len(windows)):
                    assert grown.expire(now, k) == full.expire(now, k)
                grown.add(now)
                full.add(now)
        elif op[0] == "expire":
            now += op[1] * windows[1]
            credit_from = None if op[3] < 0 else grown.index(now) - op[3]
            assert grown.expire(now, op[2], credit_from) == full.expire(now, op[2], credit_from)
        elif op[0] == "ask":
            credit_from = None if op[3] < 0 else grown.index(now) - op[3]
            got = grown.release_time(op[2], op[1], credit_from)
            assert got == full.release_time(op[2], op[1], credit_from)
        else:
            grown.clear()
            full.clear()
        same(grown, full, len(windows), full_bytes)


@settings(max_examples=300, deadline=None)
@given(config=st.sampled_from(CONFIGS), ops=OPS, start=st.floats(0, 10**6))
def test_no_window_ever_counts_fewer_than_the_service(
    config: tuple[float, tuple[float, float], float], ops: list[tuple[Any, ...]], start: float
) -> None:
    """Against every event's own time: the never-under-count guarantee, in either layout.

    The service counts an event at ``t`` in a sliding window of ``W`` until ``t + W``, and in
    a fixed one until the window's end; the ring must count it at least that long (and at most
    one bucket and the margin longer), and must never say that requests will have left by a
    time at which the service still counts them.
    """
    width, windows, margin = config
    ring = _Ring(width, windows, margin)
    events: list[float] = []
    now = start
    for op in ops:
        if op[0] in ("add", "burst"):
            steps = [op[1] * windows[1]] if op[0] == "add" else [width * 0.9] * op[1]
            for step in steps:
                now += step
                for k in range(len(windows)):
                    ring.expire(now, k)
                ring.add(now)
                events.append(now)
        elif op[0] == "expire":
            now += op[1] * windows[1]
        elif op[0] == "ask":
            k, need = op[2], op[1]
            ring.expire(now, k)
            when = ring.release_time(k, need)
            if need > 0 and when != float("inf"):
                # By then the service counts no more than what the ring will still count.
                assert sum(t + windows[k] > when for t in events) <= ring.totals[k] - need
        else:
            ring.clear()
            events = []
        for k, window in enumerate(windows):
            ring.expire(now, k)
            sliding = sum(t + window > now for t in events)
            fixed = sum(t >= now // window * window for t in events)
            assert ring.totals[k] >= sliding >= fixed
            assert ring.totals[k] <= sum(t + window + margin + width >= now for t in events)
