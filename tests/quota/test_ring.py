"""The in-memory store's bucket ring: small until its events span time, same answers as a full one.

A ring starts with no slots, takes 16 at its first event and doubles as its live buckets span
more of the longest window. These tests hold it to a ring that has its largest size from the
start: every count, release time and credit must be the same, under any sequence of events.
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
    assert ring.next_release(0) == ring.release_at(ring.index(2000.0), 0)


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


# Ops, with times as fractions of the longest window (so every ring grows to its largest):
# ("add", dt) moves the clock on and counts an event, expiring every window first as HookState
# does; ("expire", dt, k, back) moves the clock on and expires window k, crediting from
# ``back`` buckets before now; ("ask", need, k, back) asks when ``need`` events will leave.
ADD = st.tuples(
    st.just("add"), st.one_of(st.floats(0, 0.005), st.floats(0, 0.1), st.floats(0, 0.6))
)
EXPIRE = st.tuples(st.just("expire"), st.floats(0, 0.5), st.integers(0, 1), st.integers(-1, 6000))
ASK = st.tuples(st.just("ask"), st.integers(-1, 50), st.integers(0, 1), st.integers(-1, 6000))
CLEAR = st.tuples(st.just("clear"))
OPS = st.lists(st.one_of(ADD, ADD, ADD, ADD, EXPIRE, ASK, CLEAR), max_size=150)


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
        if op[0] == "add":
            now += op[1] * windows[1]
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
