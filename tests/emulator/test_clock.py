"""The emulator's clocks: UTC readings, fixed windows on UTC hours and days, a sped-up clock."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from trio.testing import MockClock

from hookapi.emulator import Clock, Emulator, LoopClock, ScaledClock

from .conftest import HandClock, post

pytestmark = pytest.mark.anyio

HALF_MINUTE_TO_ELEVEN = datetime(2026, 12, 5, 10, 59, 30, tzinfo=UTC)
ELEVEN = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)


class FakeTimer:
    """The monotonic seconds a :class:`ScaledClock` scales, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def at(when: datetime) -> HandClock:
    return HandClock(when.timestamp())


# -- fixed windows are UTC clock hours and days -------------------------------------------


async def test_posts_either_side_of_eleven_utc_count_in_different_hours() -> None:
    clock = at(HALF_MINUTE_TO_ELEVEN)
    emulator = Emulator(per_hour=2, per_day=10, clock=clock)
    hook = emulator.create_hook()
    assert (await post(emulator, hook, "a")).status_code == 200
    assert (await post(emulator, hook, "b")).status_code == 200
    refused = await post(emulator, hook, "c")
    # The hour that started at 10:00 UTC ends at 11:00 UTC, 30 s away: not an hour away.
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "30")
    clock.now = ELEVEN.timestamp()
    answer = await post(emulator, hook, "d")
    assert (answer.status_code, answer.headers["x-rate-limit-used"]) == (200, "1")
    quota = emulator.quota(hook)
    assert (quota.used_hour, quota.used_day) == (1, 3)


async def test_the_day_turns_at_midnight_utc() -> None:
    clock = at(datetime(2026, 12, 5, 23, 59, 59, tzinfo=UTC))
    emulator = Emulator(per_hour=5, per_day=2, clock=clock)
    hook = emulator.create_hook()
    for text in ("a", "b"):
        assert (await post(emulator, hook, text)).status_code == 200
    refused = await post(emulator, hook, "c")
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
    clock.now = datetime(2026, 12, 6, tzinfo=UTC).timestamp()
    assert (await post(emulator, hook, "d")).status_code == 200
    assert emulator.quota(hook).used_day == 1


async def test_received_at_is_the_utc_time_on_the_emulators_clock() -> None:
    clock = at(HALF_MINUTE_TO_ELEVEN)
    emulator = Emulator(clock=clock)
    hook = emulator.create_hook()
    await post(emulator, hook, "before")
    clock.now += 45.25
    await post(emulator, hook, "after")
    before, after = emulator.messages(hook)
    assert before.received_at == HALF_MINUTE_TO_ELEVEN
    assert before.received_at.tzinfo is UTC
    assert after.received_at == ELEVEN + timedelta(seconds=15.25)
    assert after.received_monotonic - before.received_monotonic == 45.25


# -- the default clock: the event loop's, read as UTC ----------------------------------------


def test_the_default_clock_is_the_loop_clock() -> None:
    assert isinstance(Emulator().clock, LoopClock)


async def test_the_loop_clock_starts_at_its_start_and_moves_with_the_loop() -> None:
    emulator = Emulator(per_hour=1, clock=LoopClock(start=HALF_MINUTE_TO_ELEVEN))
    hook = emulator.create_hook()
    assert (await post(emulator, hook, "10:59:30")).status_code == 200
    refused = await post(emulator, hook, "refused")
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "30")
    await anyio.sleep(30)  # virtual: the loop's clock jumps
    assert (await post(emulator, hook, "11:00:00")).status_code == 200
    assert [m.received_at for m in emulator.messages(hook)] == [HALF_MINUTE_TO_ELEVEN, ELEVEN]


def test_outside_a_loop_the_loop_clock_stands_at_its_latest_reading() -> None:
    clock = LoopClock(start=ELEVEN)
    assert clock() == ELEVEN.timestamp()  # never read in a loop: its start

    async def two_hours_on() -> float:
        assert clock() == ELEVEN.timestamp()  # the first reading in a loop is the start
        await anyio.sleep(7200)
        return clock()

    virtual = {"clock": MockClock(autojump_threshold=0)}
    inside = anyio.run(two_hours_on, backend="trio", backend_options=virtual)
    assert inside == ELEVEN.timestamp() + 7200
    assert clock() == inside


def test_a_loop_clock_without_a_start_starts_at_the_wall_clock() -> None:
    # time.time() as the clock reads it: datetime.now() rounds to the microsecond, and a
    # "before" rounded up can be later than the reading that follows it.
    before = time.time()
    reading = LoopClock()()
    after = time.time()
    assert before <= reading <= after


def test_a_start_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        LoopClock(start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        ScaledClock(60, start=datetime(2026, 1, 1))


# -- the scaled clock ---------------------------------------------------------------------


def test_a_scaled_clock_runs_scale_times_faster_from_its_start() -> None:
    timer = FakeTimer()
    clock = ScaledClock(3600, start=HALF_MINUTE_TO_ELEVEN, timer=timer)
    assert clock() == HALF_MINUTE_TO_ELEVEN.timestamp()
    assert clock.start == HALF_MINUTE_TO_ELEVEN
    assert clock.scale == 3600.0
    timer.now += 0.25  # a quarter of a real second: a quarter of an hour
    assert clock() == HALF_MINUTE_TO_ELEVEN.timestamp() + 900
    assert "scale=3600" in repr(clock)


def test_a_scaled_clock_starts_at_the_wall_clock_by_default() -> None:
    before = datetime.now(UTC)
    clock = ScaledClock(720, timer=FakeTimer())
    after = datetime.now(UTC)
    # datetime.now() truncates to the microsecond and fromtimestamp() rounds to the nearest,
    # so a start read in the same microsecond as `after` may show as the next one.
    tick = timedelta(microseconds=1)
    assert before <= clock.start <= after + tick
    assert clock() == pytest.approx(clock.start.timestamp(), abs=1e-6)  # start: whole µs


@pytest.mark.parametrize("scale", [0, -1.0, math.nan, math.inf, 1e9 + 1, True, "60", None])
def test_a_scale_must_be_finite_above_0_and_at_most_1e9(scale: object) -> None:
    with pytest.raises(ValueError, match="scale must be a finite number above 0"):
        ScaledClock(scale)  # type: ignore[arg-type]


async def test_an_hour_of_quota_passes_in_a_real_second_on_a_scaled_clock() -> None:
    timer = FakeTimer()
    clock = ScaledClock(3600, start=HALF_MINUTE_TO_ELEVEN, timer=timer)
    emulator = Emulator(per_hour=2, per_day=100, clock=clock)
    hook = emulator.create_hook()
    for text in ("a", "b"):
        assert (await post(emulator, hook, text)).status_code == 200
    refused = await post(emulator, hook, "c")
    # Retry-After is in the emulator's (sped-up) seconds: 30 of them, 1/120 s of real time.
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "30")
    timer.now += 29 / 3600
    assert (await post(emulator, hook, "still 10:59")).status_code == 429
    timer.now += 1 / 3600
    assert (await post(emulator, hook, "11:00")).status_code == 200
    assert emulator.messages(hook)[-1].received_at == ELEVEN


def test_every_clock_here_is_a_clock() -> None:
    clocks: list[Clock] = [LoopClock(), ScaledClock(2.0), HandClock(), lambda: 0.0]
    assert all(isinstance(clock(), float) for clock in clocks)
