"""Quotas: fixed and sliding windows to the exact boundary, Retry-After, and what counts."""

from __future__ import annotations

import copy

import anyio
import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hookapi.emulator import Emulator, Hook, Window
from hookapi.emulator._quota import DAY, HOUR, make_counter
from hookapi.testing import make_client

from .conftest import HandClock, post, rate, send

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


async def answer_at(
    emulator: Emulator, hook: Hook, clock: HandClock, now: float
) -> tuple[int, int, int, str | None]:
    """Post at ``now``: status, Used, Remaining and Retry-After."""
    clock.now = now
    response = await post(emulator, hook)
    _, _, used, remaining = rate(response)
    return response.status_code, used, remaining, response.headers.get("retry-after")


async def test_fixed_hours_start_at_multiples_of_3600(
    emulator: Emulator, hook: Hook, clock: HandClock
) -> None:
    assert await answer_at(emulator, hook, clock, 0.0) == (200, 1, 2, None)
    assert await answer_at(emulator, hook, clock, 1.0) == (200, 2, 1, None)
    assert await answer_at(emulator, hook, clock, 2.0) == (200, 3, 0, None)
    assert await answer_at(emulator, hook, clock, 3.0) == (429, 3, 0, "3597")
    assert await answer_at(emulator, hook, clock, 3599.5) == (429, 3, 0, "1")
    assert await answer_at(emulator, hook, clock, 3599.999) == (429, 3, 0, "1")
    # At exactly 3600 a new hour starts; the day still holds the first three.
    assert await answer_at(emulator, hook, clock, 3600.0) == (200, 1, 1, None)


async def test_a_fixed_hour_started_midway_still_ends_on_the_clock_hour(
    emulator: Emulator, hook: Hook, clock: HandClock
) -> None:
    for now in (5400.0, 5401.0, 5402.0):
        assert (await answer_at(emulator, hook, clock, now))[0] == 200
    assert await answer_at(emulator, hook, clock, 5403.0) == (429, 3, 0, "1797")
    assert await answer_at(emulator, hook, clock, 7200.0) == (200, 1, 1, None)


async def test_a_sliding_hour_frees_each_slot_exactly_3600_s_later(clock: HandClock) -> None:
    emulator = Emulator(per_hour=3, per_day=100, window="sliding", clock=clock)
    hook = emulator.create_hook()
    for now in (0.0, 10.0, 20.0):
        assert (await answer_at(emulator, hook, clock, now))[0] == 200
    assert await answer_at(emulator, hook, clock, 30.0) == (429, 3, 0, "3570")
    assert await answer_at(emulator, hook, clock, 3599.25) == (429, 3, 0, "1")
    # The request made at 0 stops counting at exactly 3600.
    assert await answer_at(emulator, hook, clock, 3600.0) == (200, 3, 0, None)
    assert await answer_at(emulator, hook, clock, 3605.0) == (429, 3, 0, "5")
    assert await answer_at(emulator, hook, clock, 3610.0) == (200, 3, 0, None)
    clock.now = 7210.0
    assert emulator.quota(hook).used_hour == 0
    assert emulator.quota(hook).used_day == 5


async def test_the_daily_window_binds_when_the_hour_has_room(
    emulator: Emulator, hook: Hook, clock: HandClock
) -> None:
    for now in (0.0, 1.0, 2.0, 3600.0, 3601.0):
        assert (await answer_at(emulator, hook, clock, now))[0] == 200
    # The hour has used 2 of 3 but the day 5 of 5: Remaining is 0, the wait runs to midnight.
    assert await answer_at(emulator, hook, clock, 3602.0) == (429, 2, 0, str(86400 - 3602))
    assert await answer_at(emulator, hook, clock, 86400.0) == (200, 1, 2, None)


async def test_a_sliding_day_frees_when_its_oldest_request_is_a_day_old(clock: HandClock) -> None:
    emulator = Emulator(per_hour=3, per_day=5, window="sliding", clock=clock)
    hook = emulator.create_hook()
    for now in (0.0, 1.0, 2.0, 4000.0, 4001.0):
        assert (await answer_at(emulator, hook, clock, now))[0] == 200
    assert await answer_at(emulator, hook, clock, 4002.0) == (429, 2, 0, str(86400 - 4002))
    assert (await answer_at(emulator, hook, clock, 86400.0))[0] == 200


@pytest.mark.parametrize("window", ["fixed", "sliding"])
async def test_when_both_windows_are_full_the_later_wait_binds(
    clock: HandClock, window: Window
) -> None:
    emulator = Emulator(per_hour=2, per_day=2, window=window, clock=clock)
    hook = emulator.create_hook()
    await answer_at(emulator, hook, clock, 100.0)
    await answer_at(emulator, hook, clock, 100.0)
    expected = 86400 - 100 if window == "fixed" else 86400
    assert await answer_at(emulator, hook, clock, 100.0) == (429, 2, 0, str(expected))


async def test_a_429_says_so_in_json_and_posts_nothing(
    emulator: Emulator, hook: Hook, clock: HandClock
) -> None:
    for _ in range(3):
        await post(emulator, hook)
    response = await post(emulator, hook, "one too many")
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "rate_limited"
    assert "3600 s" in body["error_description"]
    assert "one too many" not in [m.text for m in emulator.messages(hook)]


@pytest.mark.parametrize(
    ("setup", "counts"),
    [
        ("ok", True),
        ("bad-body", True),
        ("fault-500", True),
        ("fault-400", True),
        ("fault-delay", True),
        ("fault-drop-posted", True),
        ("fault-503", False),
        ("fault-429", False),
        ("fault-502", False),
        ("fault-drop", False),
        ("wrong-secret", False),
        ("unknown-path", False),
        ("wrong-method", False),
    ],
)
async def test_what_counts_against_the_quota(
    emulator: Emulator, hook: Hook, setup: str, counts: bool
) -> None:
    kind, _, detail = setup.partition("-")
    path, method, content = f"/{hook.id}/{hook.secret}/message", "POST", b'{"message": "x"}'
    if kind == "fault":
        if detail == "delay":
            emulator.fail_next("delay", delay=1.0)
        elif detail.startswith("drop"):
            emulator.fail_next("drop", posted=detail == "drop-posted")
        else:
            emulator.fail_next(int(detail))
    elif setup == "bad-body":
        content = b"nope"
    elif setup == "wrong-secret":
        path = f"/{hook.id}/x/message"
    elif setup == "unknown-path":
        path = f"/{hook.id}/{hook.secret}"
    elif setup == "wrong-method":
        method = "GET"
    if setup.startswith("fault-drop"):
        with pytest.raises(httpx.RemoteProtocolError):
            await send(emulator, method, path, content=content, headers=JSON)
    else:
        await send(emulator, method, path, content=content, headers=JSON)
    assert emulator.quota(hook).used_hour == int(counts)


async def test_a_refused_request_does_not_count(emulator: Emulator, hook: Hook) -> None:
    for _ in range(10):
        await post(emulator, hook)
    quota = emulator.quota(hook)
    assert (quota.used_hour, quota.used_day) == (3, 3)
    assert emulator.status_counts == {200: 3, 429: 7}


async def test_days_of_windows_run_on_the_event_loops_virtual_clock() -> None:
    emulator = Emulator(per_hour=2, per_day=3, window="sliding")
    hook = emulator.create_hook()
    start = anyio.current_time()
    statuses = []
    while len(emulator.messages(hook)) < 9:  # three days of quota
        response = await post(emulator, hook)
        statuses.append(response.status_code)
        if response.status_code == 429:
            await anyio.sleep(int(response.headers["retry-after"]))
    assert statuses.count(429) == 5  # one wait per refusal: Retry-After was always enough
    elapsed = anyio.current_time() - start
    assert 2 * DAY <= elapsed < 2 * DAY + 2 * HOUR


# Steps in 64ths of a second add up without rounding, so the reference model below can use
# the exact window definitions.
EXACT_STEPS = st.lists(
    st.integers(0, 5000 * 64).map(lambda n: n / 64) | st.sampled_from([0.0, 3600.0]),
    max_size=60,
)


@given(
    window=st.sampled_from(["fixed", "sliding"]),
    per_hour=st.integers(1, 5),
    per_day=st.integers(1, 8),
    steps=EXACT_STEPS,
)
def test_counters_match_the_window_definitions(
    window: Window, per_hour: int, per_day: int, steps: list[float]
) -> None:
    counter = make_counter(window, per_hour=per_hour, per_day=per_day)
    admitted: list[float] = []
    now = 0.0
    for step in steps:
        now += step
        if window == "fixed":
            hour = sum(1 for t in admitted if t // HOUR == now // HOUR)
            day = sum(1 for t in admitted if t // DAY == now // DAY)
        else:
            hour = sum(1 for t in admitted if t > now - HOUR)
            day = sum(1 for t in admitted if t > now - DAY)
        state = counter.state(now)
        assert (state.used_hour, state.used_day) == (hour, day)
        assert state.remaining == max(0, min(per_hour - hour, per_day - day))
        room = hour < per_hour and day < per_day
        if not room:
            wait = counter.retry_after(now)
            # Waiting Retry-After seconds is enough, and one second less is not (probed on
            # copies: looking ahead forgets requests that have left the window).
            assert copy.deepcopy(counter).state(now + wait).remaining > 0
            assert wait == 1 or copy.deepcopy(counter).state(now + wait - 1).remaining == 0
        assert counter.admit(now) is room
        if room:
            admitted.append(now)


@given(
    window=st.sampled_from(["fixed", "sliding"]),
    start=st.floats(0, 1e7, allow_nan=False),
    steps=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=10),
)
def test_waiting_retry_after_is_always_enough(
    window: Window, start: float, steps: list[float]
) -> None:
    counter = make_counter(window, per_hour=len(steps), per_day=len(steps) + 1)
    now = start
    for step in steps:
        now += step
        assert counter.admit(now)
    assume(counter.state(now).remaining == 0)  # not so when a fixed hour began meanwhile
    # However the clock's floats round, a client sleeping Retry-After gets in.
    assert counter.admit(now + counter.retry_after(now))


def test_the_quota_reads_outside_an_event_loop() -> None:
    emulator = Emulator(per_hour=10, per_day=100)
    hook = emulator.create_hook("Ops")
    assert emulator.quota(hook).remaining == 10  # before any loop ran

    async def post() -> None:
        async with make_client(emulator, hook) as client:
            for text in ("one", "two", "three"):
                await client.post_message(text)

    anyio.run(post)
    quota = emulator.quota(hook)  # after the loop: as of its latest reading
    assert (quota.used_hour, quota.remaining) == (3, 7)


def test_a_clock_of_ones_own_that_fails_is_not_hidden() -> None:
    def broken() -> float:
        raise RuntimeError("the clock broke")

    emulator = Emulator(clock=broken)
    hook = emulator.create_hook()
    with pytest.raises(RuntimeError, match="the clock broke"):
        emulator.quota(hook)
