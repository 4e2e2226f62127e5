"""Throttling: the client paces itself from the rate-limit headers, shared across tasks."""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
from collections import deque
from collections.abc import Coroutine
from functools import partial
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from hookapi import RateLimitError, RetryPolicy
from hookapi._http import RateLimitTransport
from hookapi._quota import (
    HookKey,
    HookState,
    MemoryQuota,
    NotNow,
    QuotaAnswer,
    QuotaPolicy,
    RateLimit,
    Reservation,
)

from ..conftest import HOOK_ID, ClientFactory, rate_headers

pytestmark = pytest.mark.anyio

T = TypeVar("T")


class QuotaService:
    """A stand-in Hook API with a sliding hourly and daily quota, on the test's clock."""

    def __init__(self, *, per_hour: int, per_day: int, latency: float = 0.05) -> None:
        self.per_hour = per_hour
        self.per_day = per_day
        self.latency = latency
        self.accepted: deque[float] = deque()
        self.refused = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[float] = []

    def _used(self, now: float, window: float) -> int:
        return sum(1 for t in self.accepted if t > now - window)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.starts.append(anyio.current_time())
        try:
            await anyio.sleep(self.latency)
            now = anyio.current_time()
            hour, day = self._used(now, 3600), self._used(now, 86400)
            remaining = min(self.per_hour - hour, self.per_day - day)
            if remaining <= 0:
                self.refused += 1
                headers = rate_headers(0, per_hour=self.per_hour, per_day=self.per_day, used=hour)
                return httpx.Response(429, headers=headers)
            self.accepted.append(now)
            headers = rate_headers(
                remaining - 1, per_hour=self.per_hour, per_day=self.per_day, used=hour + 1
            )
            return httpx.Response(200, text="ok", headers=headers)
        finally:
            self.in_flight -= 1


async def test_concurrent_calls_reserve_from_the_known_budget(make_client: ClientFactory) -> None:
    service = QuotaService(per_hour=6, per_day=100)
    async with make_client(transport=httpx.MockTransport(service)) as client:
        await client.post_message("learn the quota")  # Remaining: 5
        outcomes: list[str] = []

        async def post(i: int) -> None:
            try:
                await client.post_message(f"m{i}", deadline=60)
                outcomes.append("sent")
            except RateLimitError as exc:
                outcomes.append("refused locally" if exc.local else "refused by the service")

        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(post, i)
    assert outcomes.count("sent") == 5
    assert outcomes.count("refused locally") == 95
    assert len(service.starts) == 6
    assert service.refused == 0
    assert anyio.current_time() - started == pytest.approx(0.05)  # nobody slept for the quota


async def test_waits_for_the_quota_to_come_back_without_a_refusal(
    make_client: ClientFactory,
) -> None:
    service = QuotaService(per_hour=10, per_day=1000)
    async with make_client(transport=httpx.MockTransport(service)) as client:
        await client.post_message("learn the quota")
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(39):
                tg.start_soon(partial(client.post_message, f"m{i}", deadline=5 * 3600))
        elapsed = anyio.current_time() - started
    assert service.refused == 0
    assert len(service.accepted) == 40
    # 9 go at once, then 10 more each hour: the last batch starts just after 3 h
    assert 3 * 3600 < elapsed < 3 * 3600 + 10


async def test_never_idles_while_the_budget_allows(make_client: ClientFactory) -> None:
    service = QuotaService(per_hour=100, per_day=1000, latency=1.0)
    async with make_client(transport=httpx.MockTransport(service)) as client:
        await client.post_message("learn the quota")
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(client.post_message, f"m{i}")
        assert anyio.current_time() - started == pytest.approx(1.0)
    assert service.max_in_flight == 40


async def test_the_daily_quota_is_respected(make_client: ClientFactory) -> None:
    service = QuotaService(per_hour=50, per_day=60, latency=0.01)
    async with make_client(transport=httpx.MockTransport(service)) as client:
        await client.post_message("learn the quota")
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(69):
                tg.start_soon(partial(client.post_message, f"m{i}", deadline=2 * 86400))
        elapsed = anyio.current_time() - started
    assert service.refused == 0
    assert len(service.accepted) == 70
    assert 86400 < elapsed < 86400 + 60


async def test_a_wait_past_the_deadline_fails_at_once_without_sending(
    make_client: ClientFactory,
) -> None:
    service = QuotaService(per_hour=1, per_day=10)
    async with make_client(transport=httpx.MockTransport(service)) as client:
        await client.post_message("the only one this hour")
        before = anyio.current_time()
        with pytest.raises(RateLimitError) as caught:
            await client.post_message("too many", deadline=600)
        assert anyio.current_time() == before
    assert caught.value.local
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 3000
    assert "not sent" in str(caught.value)
    assert len(service.starts) == 1


async def test_missing_headers_mean_no_throttling(make_client: ClientFactory) -> None:
    in_flight = peak = 0

    async def bare(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.1)
        in_flight -= 1
        return httpx.Response(200, text="ok")

    async with (
        make_client(transport=httpx.MockTransport(bare)) as client,
        anyio.create_task_group() as tg,
    ):
        for i in range(30):
            tg.start_soon(client.post_message, f"m{i}")
    assert peak == 29  # the first went alone to learn the quota; then nothing held them back
    assert client.rate_limit is None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Rate-Limit-Remaining": "-3"},
        {"X-Rate-Limit-Remaining": "lots", "X-Rate-Limit-Total-Per-Hour": "1e3"},
        {"X-Rate-Limit-Used": "", "X-Rate-Limit-Total-Per-Day": "12 34"},
    ],
)
async def test_malformed_headers_never_crash_or_throttle(
    make_client: ClientFactory, headers: dict[str, str]
) -> None:
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, headers=headers)

    async with make_client(transport=httpx.MockTransport(answer)) as client:
        for i in range(5):
            result = await client.post_message(f"m{i}")
    assert calls == 5
    assert result.rate_limit == RateLimit()


async def test_refusals_back_off_instead_of_storming(make_client: ClientFactory) -> None:
    times: list[float] = []
    in_flight = peak = 0

    async def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        times.append(anyio.current_time())
        await anyio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(429, headers={"X-Rate-Limit-Remaining": "0"})

    policy = RetryPolicy(max_attempts=50, initial_delay=0.01, max_delay=0.01, deadline=3600)
    async with make_client(transport=httpx.MockTransport(refuse), retry=policy) as client:
        outcomes: list[type[BaseException]] = []

        async def post(i: int) -> None:
            with pytest.raises(RateLimitError) as caught:
                await client.post_message(f"m{i}")
            outcomes.append(type(caught.value))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(post, i)
    assert outcomes == [RateLimitError] * 20
    # the first request learns alone; after it, one probe at a time with growing gaps
    # (1 s, 2 s, 4 s ... up to 300 s), and never more than 12 refusals in an hour
    assert peak == 1
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g2 >= g1 - 0.02 for g1, g2 in itertools.pairwise(gaps))
    assert len(times) == 12


async def test_retry_after_on_429_holds_every_task(make_client: ClientFactory) -> None:
    calls: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(anyio.current_time())
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "30", **rate_headers(0)})
        return httpx.Response(200, headers=rate_headers(50))

    async with make_client(transport=httpx.MockTransport(answer)) as client:
        started = anyio.current_time()
        await client.post_message("refused, then retried")
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(client.post_message, f"m{i}")
    assert calls[0] == started
    assert all(t >= started + 30 for t in calls[1:])
    assert len(calls) == 7


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never awaits (the in-memory store's methods) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("the in-memory store awaited something")  # pragma: no cover


class Hook:
    """One hook's in-memory state on a hand-driven clock."""

    def __init__(self, policy: QuotaPolicy | None = None) -> None:
        self.now = 0.0
        self.state = HookState(policy or QuotaPolicy(), clock=lambda: self.now)

    def reserve(self) -> Reservation | NotNow:
        return run(self.state.reserve())

    def take(self) -> Reservation:
        reservation = self.reserve()
        assert isinstance(reservation, Reservation), reservation
        return reservation

    def answer(
        self,
        reservation: Reservation,
        status: int = 200,
        retry_after: float | None = None,
        **rl: int,
    ) -> None:
        answer = QuotaAnswer(
            status_code=status, rate_limit=RateLimit(**rl), retry_after=retry_after
        )
        run(self.state.settle(reservation, answer))

    def lost(self, reservation: Reservation) -> None:
        run(self.state.settle(reservation, None))

    def refund(self, reservation: Reservation) -> None:
        run(self.state.refund(reservation))

    def budget(self) -> float:
        return run(self.state.budget())


@pytest.mark.parametrize(
    ("b_remaining", "a_remaining"),
    [(8, 9), (9, 8)],
    ids=["service-counted-a-first", "service-counted-b-first"],
)
def test_overtaken_answers_keep_the_budget_exact(b_remaining: int, a_remaining: int) -> None:
    hook = Hook()
    hook.answer(hook.take(), per_hour=100, remaining=10)
    a, b = hook.take(), hook.take()
    assert hook.budget() == 8
    # b's answer arrives first and is trusted (nothing else answered during its flight);
    # a, still in flight, is assumed not yet counted
    hook.answer(b, per_hour=100, remaining=b_remaining)
    assert hook.budget() == b_remaining - 1
    # a's answer says whether the service counted it before b; either way the truth is 8
    hook.answer(a, per_hour=100, remaining=a_remaining)
    assert hook.budget() == 8


def test_an_answer_can_never_raise_the_budget_past_the_services_word() -> None:
    hook = Hook()
    hook.answer(hook.take(), remaining=5)
    a, b = hook.take(), hook.take()
    hook.answer(b, remaining=0)  # others used the quota meanwhile
    hook.answer(a, remaining=0)
    assert hook.budget() <= 0


def test_budget_comes_back_as_own_requests_leave_the_hour() -> None:
    hook = Hook(QuotaPolicy(margin=0.5))
    hook.answer(hook.take(), per_hour=4, per_day=100, remaining=3)
    reservations = [hook.take() for _ in range(3)]
    # the service counted them in the opposite order to the one their answers arrive in
    for reservation, remaining in zip(reservations, (0, 2, 1), strict=True):
        hook.answer(reservation, per_hour=4, per_day=100, remaining=remaining)
    assert hook.budget() == 0
    # counted in buckets, each credited back an hour and the margin after its latest request
    hook.now = 3600.4
    assert hook.budget() == 0
    hook.now = 3600.501  # rounded up, by less than a millisecond
    assert hook.budget() == 4


def test_answers_in_processing_order_keep_the_budget_exact() -> None:
    hook = Hook()
    hook.answer(hook.take(), remaining=10)
    reservations = [hook.take() for _ in range(4)]
    for reservation, remaining in zip(reservations, (9, 8, 7, 6), strict=True):
        hook.answer(reservation, remaining=remaining)
    assert hook.budget() == 6


def test_refunds_give_the_slot_back_and_lost_requests_count() -> None:
    hook = Hook()
    hook.answer(hook.take(), per_hour=10, remaining=2)
    again = hook.take()
    assert hook.budget() == 1
    hook.refund(again)
    assert hook.budget() == 2
    maybe = hook.take()
    hook.lost(maybe)
    assert hook.budget() == 1


def test_until_the_first_answer_one_request_goes_alone() -> None:
    hook = Hook()
    first = hook.take()
    assert first.probe
    waiting = hook.reserve()
    assert isinstance(waiting, NotNow)
    assert waiting.retry_in is None  # only the answer can tell
    hook.refund(first)  # it never left: the next one learns instead
    second = hook.take()
    hook.answer(second)
    assert hook.budget() == math.inf


def test_no_headers_no_limit() -> None:
    hook = Hook()
    run(hook.state.settle(hook.take(), QuotaAnswer(status_code=200)))
    assert hook.budget() == math.inf


def test_a_remaining_older_than_an_hour_is_forgotten() -> None:
    hook = Hook()
    hook.answer(hook.take(), remaining=0)
    assert hook.budget() == 0
    hook.now = 3600.5
    assert hook.budget() == math.inf


def test_the_state_grows_with_the_time_spanned_not_the_rate() -> None:
    hook = Hook()
    assert hook.state.nbytes() == 0
    hook.answer(hook.take(), per_hour=10**6, per_day=10**7, remaining=10**6)
    first = hook.state.nbytes()
    for _ in range(5000):
        hook.now += 0.17  # about 500,000 a day, for 850 s: 57 buckets of 15 s
        hook.answer(hook.take(), per_hour=10**6, per_day=10**7, remaining=10**6)
    assert first == 16 * 6
    assert hook.state.nbytes() == 64 * 6


async def test_a_quota_of_zero_is_refused_at_once(make_client: ClientFactory) -> None:
    calls = 0

    def none_allowed(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, headers={"X-Rate-Limit-Total-Per-Hour": "0"})

    async with make_client(transport=httpx.MockTransport(none_allowed)) as client:
        await client.post_message("learns the quota is 0")
        with pytest.raises(RateLimitError, match="allows no requests") as caught:
            await client.post_message("never")
    assert caught.value.local
    assert caught.value.retry_after is None
    assert calls == 1


async def test_waiters_behind_a_probe_wait_for_its_answer(make_client: ClientFactory) -> None:
    calls: list[float] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        calls.append(anyio.current_time())
        await anyio.sleep(5)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "10"})
        return httpx.Response(200, headers=rate_headers(50))

    async with make_client(transport=httpx.MockTransport(answer)) as client:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.post_message, "refused first")
            await anyio.sleep(6)  # after the refusal: the others queue behind the probe
            for i in range(3):
                tg.start_soon(client.post_message, f"m{i}")
    # refused at 5; the probe goes alone at 15 and answers at 20; the rest go at 20
    assert [t - start for t in calls] == [0, 15, 20, 20, 20]


async def test_the_transport_layer_closes_only_what_it_owns() -> None:
    closed: list[str] = []

    class Inner(httpx.AsyncBaseTransport):
        async def aclose(self) -> None:
            closed.append("inner")

    store = MemoryQuota()
    key = HookKey(base_url="https://x.test", hook_id="a")
    url = httpx.URL("https://x.test/a/s/message")
    layer = RateLimitTransport(Inner(), store=store, key=key, real_url=url, own_inner=True)
    async with layer:
        assert layer.store is store
        assert layer.gate() is layer.gate()
        assert "s/message" not in repr(layer)
    await layer.aclose()
    async with RateLimitTransport(Inner(), store=store, key=key, real_url=url, own_inner=False):
        pass
    assert closed == ["inner"]


async def test_each_throttle_wait_is_logged_with_its_delay(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    service = QuotaService(per_hour=1, per_day=10)
    caplog.set_level(logging.INFO, logger="hookapi")
    async with make_client(transport=httpx.MockTransport(service)) as client:
        await client.post_message("the only one this hour")
        await client.post_message("waits an hour", deadline=2 * 3600)
    waits = [r for r in caplog.records if getattr(r, "hookapi_event", None) == "throttle"]
    assert len(waits) == 1
    # its answer came at 0.05 s: credited back an hour and the 0.5 s margin later
    assert vars(waits[0])["hookapi_delay"] == pytest.approx(3600.5, abs=0.001)
    assert "waiting up to 3600.50" in waits[0].getMessage()
    assert HOOK_ID in waits[0].getMessage()  # the hook is named by its id, never its secret


def test_a_budget_spent_by_unanswered_requests_is_probed_not_sat_out() -> None:
    hook = Hook()
    hook.answer(hook.take(), per_hour=10, remaining=2)
    hook.lost(hook.take())
    hook.lost(hook.take())  # cancelled after writing: the service may or may not count them
    waiting = hook.reserve()
    assert isinstance(waiting, NotNow)
    # not the hour it takes them to leave: one pacing interval (3600 / 10 s) after the answer
    assert waiting.retry_in == pytest.approx(360.0)
    hook.now = 360.0
    probe = hook.take()
    assert probe.probe
    assert isinstance(hook.reserve(), NotNow)  # one probe at a time
    # the service counted only one of them: its word supersedes the unconfirmed bookings
    hook.answer(probe, per_hour=10, remaining=7)
    assert hook.budget() == 7


def test_remaining_zero_spent_by_others_is_probed_on_a_growing_schedule() -> None:
    hook = Hook(QuotaPolicy(max_refused_probes_per_hour=3))
    hook.answer(hook.take(), per_hour=120, remaining=0, used=120)  # 119 are someone else's
    waiting = hook.reserve()
    assert isinstance(waiting, NotNow)
    assert waiting.retry_in == pytest.approx(30.0)
    times = []
    while hook.now < 3600:
        answer = hook.reserve()
        if isinstance(answer, NotNow):
            assert answer.retry_in is not None
            hook.now += answer.retry_in
            continue
        assert answer.probe
        times.append(hook.now)
        hook.answer(answer, status=429, per_hour=120, remaining=0, used=120)
    # 30 s, then doubling after each refusal (60, 120 s); then the cap of 3 refusals in any
    # hour holds the next one back until the first refusal is an hour old
    assert times == [30.0, 90.0, 210.0]
    assert hook.now == 3630.0
    assert hook.take().probe


def test_a_refusal_without_retry_after_blocks_for_the_probe_interval() -> None:
    hook = Hook(QuotaPolicy(probe_interval=3, max_probe_interval=8))
    hook.answer(hook.take(), status=429)
    waiting = hook.reserve()
    assert isinstance(waiting, NotNow)
    assert waiting.retry_in == 6  # the interval, doubled by the refusal
    hook.now = 6
    hook.answer(hook.take(), status=429, retry_after=2)  # the interval (12, capped at 8) wins
    waiting = hook.reserve()
    assert isinstance(waiting, NotNow)
    assert waiting.retry_in == 8
    hook.now = 14
    probe = hook.take()
    hook.refund(probe)  # never left: the next request is the probe
    assert hook.take().probe


async def test_every_call_held_back_logs_its_wait_not_only_the_head(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    service = QuotaService(per_hour=2, per_day=100)
    caplog.set_level(logging.INFO, logger="hookapi")
    waited: set[str] = set()

    class Tagged(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if getattr(record, "hookapi_event", None) == "throttle":
                waited.add(current.get())
            return True

    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="")
    tag = Tagged()
    logging.getLogger("hookapi").addFilter(tag)

    async def post(text: str) -> None:
        current.set(text)
        await client.post_message(text, deadline=math.inf)

    try:
        async with make_client(transport=httpx.MockTransport(service)) as client:
            await client.post_message("first")
            await client.post_message("second")  # the quota is known to be used up now
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(post, f"m{i}")
    finally:
        logging.getLogger("hookapi").removeFilter(tag)
    # Five calls held back (for an hour or more), five calls logged, each with its delay.
    assert waited == {f"m{i}" for i in range(5)}
    waits = [r for r in caplog.records if getattr(r, "hookapi_event", None) == "throttle"]
    assert all(vars(r)["hookapi_delay"] > 0 for r in waits)
    assert any("behind earlier calls" in r.getMessage() for r in waits)
