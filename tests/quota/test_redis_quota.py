"""RedisQuota against a real redis-server: one quota for every process, the service its authority.

Two ``RedisQuota`` objects stand for two processes (each has its own place in the fleet's
queue and its own local view). The loop runs on a clock ``SCALE`` times faster than real time,
and so does the store's time in Redis, so a quota hour passes in a second and a minute's
cooldown in milliseconds.
"""

from __future__ import annotations

import logging
import math
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio
import trio

import hookapi
from hookapi import (
    AsyncHookClient,
    HookAPIError,
    InvalidInputError,
    QuotaUnavailableError,
    RateLimit,
    RedisQuota,
    RetryPolicy,
)
from hookapi._quota import HookKey, HookQuota, NotNow, QuotaAnswer, QuotaStore, Reservation
from hookapi._redis import _store
from hookapi.cli._stage import ScaledClock, ScaledTimeLoop
from hookapi.emulator import Emulator

from .redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SCALE = 3600.0
KEY = HookKey(base_url="https://hooks.example.test/v1", hook_id="35d7bef2-3d7e-11ec")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncio (redis-py's only backend) on a clock an hour per real second."""
    return ("asyncio", {"loop_factory": lambda: ScaledTimeLoop(ScaledClock(SCALE))})


@pytest.fixture
def prefix() -> str:
    """Keys of this test only, on the session's server."""
    return f"t{uuid.uuid4().hex[:8]}:"


Make = Callable[..., RedisQuota]
# A call's deadline in real seconds: the default 60 s of this clock would be 17 ms.
REAL_SECONDS = RetryPolicy(deadline=10 * SCALE)


@pytest.fixture
async def make(redis_server: RedisServer, prefix: str) -> AsyncIterator[Make]:
    made: list[RedisQuota] = []

    def build(url: str | None = None, **options: Any) -> RedisQuota:
        options.setdefault("prefix", prefix)
        quota = RedisQuota(url or redis_server.url, _time_scale=SCALE, **options)
        made.append(quota)
        return quota

    yield build
    for quota in made:
        await quota.aclose()


def shared_again(quota: RedisQuota) -> bool:
    return quota.available


def raw_client(url: str) -> redis.asyncio.Redis:
    """A plain client; redis-py's default timeouts would be milliseconds on this clock."""
    return redis.asyncio.Redis.from_url(url, socket_timeout=None, socket_connect_timeout=None)


def ok(remaining: int | None, *, per_hour: int = 100, per_day: int = 1000) -> QuotaAnswer:
    return QuotaAnswer(
        status_code=200,
        rate_limit=RateLimit(per_hour=per_hour, per_day=per_day, remaining=remaining),
    )


async def settle(hook: Any, reservation: Reservation, answer: QuotaAnswer | None) -> None:
    """Settle, and wait until Redis has it (the store sends it on without waiting)."""
    await hook.settle(reservation, answer)
    await hook.flush()


async def refund(hook: Any, reservation: Reservation) -> None:
    await hook.refund(reservation)
    await hook.flush()


async def take(hook: HookQuota) -> Reservation:
    answer = await hook.reserve()
    assert isinstance(answer, Reservation), answer
    return answer


async def test_it_implements_the_store_protocol(make: Make) -> None:
    quota = make()
    assert isinstance(quota, QuotaStore)
    hook = quota.hook(KEY)
    assert isinstance(hook, HookQuota)
    assert quota.hook(KEY) is hook
    # Until an answer tells the quota, one request at a time learns it.
    assert await hook.budget() == 1
    first = await take(hook)
    assert isinstance(await hook.reserve(), NotNow)
    await settle(hook, first, QuotaAnswer(status_code=200))
    assert await hook.budget() == math.inf


async def test_reservations_are_atomic_across_processes(make: Make) -> None:
    one, two = make().hook(KEY), make().hook(KEY)
    await settle(one, await take(one), ok(5))
    assert await two.budget() == 5
    granted: list[Reservation] = []

    async def ask(hook: HookQuota) -> None:
        answer = await hook.reserve()
        if isinstance(answer, Reservation):
            granted.append(answer)

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(ask, one if n % 2 else two)
    assert len(granted) == 5
    assert await one.budget() == 0
    refused = await two.reserve()
    assert isinstance(refused, NotNow)
    assert refused.retry_in is not None
    assert refused.retry_in > 0
    # Refunds come back to every process.
    await refund(one, granted.pop())
    assert await two.budget() == 1


async def test_an_answer_never_raises_the_budget_above_what_it_says(make: Make) -> None:
    one, two = make().hook(KEY), make().hook(KEY)
    await settle(one, await take(one), ok(100))
    older, newer = await take(one), await take(two)
    await settle(two, newer, ok(10))
    assert await one.budget() == 9  # the older request is still in flight
    # The older answer arrives last and says more: it cannot undo the newer one.
    await settle(one, older, ok(50))
    assert await two.budget() == 10
    # An answer with more in flight than it allows leaves nothing to start.
    flying = [await take(one) for _ in range(3)]
    await settle(two, await take(two), ok(2))
    assert await one.budget() == 2 - 3
    for reservation in flying:
        await settle(one, reservation, ok(1))
    assert await one.budget() <= 2


async def test_a_429_blocks_every_process_then_one_probe_goes(make: Make) -> None:
    one, two = make().hook(KEY), make().hook(KEY)
    await settle(one, await take(one), QuotaAnswer(status_code=429, retry_after=60.0))
    blocked = await two.reserve()
    assert isinstance(blocked, NotNow)
    assert blocked.retry_in is not None
    assert 0 < blocked.retry_in <= 60.0
    assert "refused 1 time" in blocked.reason
    assert isinstance(await one.reserve(), NotNow)
    await anyio.sleep(blocked.retry_in)
    # Two asks: the process first in the fleet's queue sends the probe; the other waits.
    probe = await two.reserve()
    assert isinstance(probe, Reservation)
    assert probe.probe
    assert isinstance(await one.reserve(), NotNow)
    assert isinstance(await two.reserve(), NotNow)
    await settle(two, probe, ok(5))
    assert await one.budget() == 5
    after = await take(one)
    assert not after.probe


async def test_429_without_retry_after_waits_the_pacing_interval(make: Make) -> None:
    one = make().hook(KEY)
    await settle(one, await take(one), ok(5, per_hour=120))
    await settle(one, await take(one), QuotaAnswer(status_code=429))
    blocked = await one.reserve()
    assert isinstance(blocked, NotNow)
    assert blocked.retry_in is not None
    assert 0 < blocked.retry_in <= 3600 / 120


async def test_waiting_processes_are_served_in_rounds(make: Make) -> None:
    one, two = make().hook(KEY), make().hook(KEY)
    await settle(one, await take(one), ok(2))
    first, second = await take(one), await take(one)
    assert isinstance(await one.reserve(), NotNow)
    assert isinstance(await two.reserve(), NotNow)
    await refund(one, first)
    assert isinstance(await one.reserve(), Reservation)
    # One slot again: the process that has not had one since both waited goes first.
    await refund(one, second)
    behind = await one.reserve()
    assert isinstance(behind, NotNow)
    assert behind.reason == "1 process(es) ahead in the queue"
    assert isinstance(await two.reserve(), Reservation)


async def until_reserved(hook: HookQuota, *, within: float) -> tuple[Reservation, float]:
    """Ask as told until a slot comes; return it and the time it took."""
    started = anyio.current_time()
    while True:
        answer = await hook.reserve()
        waited = anyio.current_time() - started
        if isinstance(answer, Reservation):
            return answer, waited
        assert answer.retry_in is not None
        assert waited + answer.retry_in <= within, answer
        await anyio.sleep(answer.retry_in)


async def test_a_dead_process_reservation_is_reclaimed_after_its_lease(make: Make) -> None:
    dead, alive = make(lease=60.0).hook(KEY), make(lease=60.0).hook(KEY)
    await settle(alive, await take(alive), ok(1))
    await take(dead)  # never settled: its process died mid-request
    assert isinstance(await alive.reserve(), NotNow)
    # The lease runs out: the request may have been sent, so it counts as used, and the fleet
    # asks the service with one probe (a pacing interval, 36 s, after the last answer)
    # instead of waiting out the hour.
    probe, waited = await until_reserved(alive, within=60.0 + 36.0 + 60.0)
    assert probe.probe
    assert waited >= 36.0
    await settle(alive, probe, ok(50))
    assert await alive.budget() == 50


async def test_a_quota_of_zero_never_comes_back(make: Make) -> None:
    hook = make().hook(KEY)
    await settle(hook, await take(hook), ok(0, per_hour=0))
    never = await hook.reserve()
    assert isinstance(never, NotNow)
    assert never.retry_in == math.inf
    assert "remaining=0" in never.reason


async def test_a_request_without_an_answer_counts_as_used(make: Make) -> None:
    one, two = make().hook(KEY), make().hook(KEY)
    await settle(one, await take(one), ok(5))
    lost = await take(one)
    assert await two.budget() == 4
    await settle(one, lost, None)  # cancelled after its first byte was written
    assert await two.budget() == 4
    assert "keys=" in repr(one)
    assert "{" + KEY.hook_id + "}" in repr(one)


async def test_scripts_are_loaded_again_when_redis_forgets_them(
    make: Make, redis_server: RedisServer
) -> None:
    quota = make()
    hook = quota.hook(KEY)
    await settle(hook, await take(hook), ok(7))
    async with raw_client(redis_server.url) as raw:
        await raw.script_flush()
        assert await raw.script_exists(*[s.sha for s in quota._here().scripts.values()]) == [0, 0]
    assert await hook.budget() == 7
    await take(hook)
    assert await hook.budget() == 6


async def test_keys_carry_the_hook_tag_a_ttl_and_no_secret(
    make: Make, redis_server: RedisServer, prefix: str
) -> None:
    hook = make().hook(KEY)
    waiting = make().hook(KEY)
    await settle(hook, await take(hook), ok(1))
    kept = await take(hook)
    assert isinstance(await waiting.reserve(), NotNow)  # a queue entry too
    async with raw_client(redis_server.url) as raw:
        keys = sorted(
            k.decode() if isinstance(k, bytes) else k for k in await raw.keys(f"{prefix}*")
        )
        assert len(keys) >= 7  # the parked hash exists only while someone is parked
        for key in keys:
            assert key.startswith(f"{prefix}{{{KEY.hook_id}}}:")
            ttl = await raw.pttl(key)
            assert 0 < ttl <= math.ceil((86400 + 3600) / SCALE * 1000)
    await settle(hook, kept, ok(0))


async def test_hooks_of_different_base_urls_share_nothing(make: Make) -> None:
    quota = make()
    here = quota.hook(KEY)
    there = quota.hook(HookKey(base_url="https://other.example.test/v1", hook_id=KEY.hook_id))
    await settle(here, await take(here), ok(0))
    assert await here.budget() == 0
    assert await there.budget() == 1  # nothing known there: one request may learn it


async def test_redis_down_paces_locally_with_one_warning_each_way(
    make: Make,
    own_redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second between attempts would be an hour of this clock: every view would go stale.
    monkeypatch.setattr(_store, "RECONNECT_INTERVAL", 0.01)
    caplog.set_level(logging.WARNING, logger="hookapi")
    quota = make(own_redis_server.url)
    hook = quota.hook(KEY)
    await settle(hook, await take(hook), ok(3))
    own_redis_server.stop()
    local = [await take(hook) for _ in range(2)]
    assert not quota.available
    # The local view paces from the last answer: 3 remaining, 2 taken since.
    assert await hook.budget() == 1
    await settle(hook, local[0], ok(1))
    await refund(hook, local[1])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0].getMessage()
    own_redis_server.start()
    await anyio.sleep(_store.RECONNECT_INTERVAL * SCALE)
    shared = await take(hook)
    assert shared_again(quota)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "back" in warnings[1].getMessage()
    # Redis came back empty: it starts from the local view, not from nothing.
    assert await hook.budget() <= 1
    await settle(hook, shared, ok(5))
    assert await hook.budget() == 5


async def test_redis_down_with_raise_refuses_without_sending(
    make: Make, own_redis_server: RedisServer
) -> None:
    quota = make(
        f"redis://:hunter2-password@127.0.0.1:{own_redis_server.port}/0",
        on_unavailable="raise",
    )
    hook = quota.hook(KEY)
    own_redis_server.stop()
    with pytest.raises(QuotaUnavailableError) as caught:
        await hook.reserve()
    error = caught.value
    # Reading the budget or ending a reservation never raises: they fall back to the local view.
    assert await hook.budget() == math.inf  # nothing known locally either
    assert error.delivery is hookapi.Delivery.NOT_SENT
    assert "on_unavailable='raise'" in str(error)
    assert "hunter2" not in str(error) + repr(quota) + repr(error.__cause__)
    assert error.__suppress_context__


async def test_a_slow_redis_counts_as_unavailable(
    make: Make, own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "REDIS_TIMEOUT", 0.05)
    quota = make(own_redis_server.url)
    hook = quota.hook(KEY)
    await settle(hook, await take(hook), ok(3))
    async with raw_client(own_redis_server.url) as raw:
        await raw.client_pause(300, all=True)
        started = anyio.current_time()
        answer = await hook.reserve()
        took = anyio.current_time() - started
    assert isinstance(answer, Reservation)
    assert not quota.available
    assert took < 0.3 * SCALE
    await refund(hook, answer)


def test_bad_options_are_refused(redis_server: RedisServer) -> None:
    with pytest.raises(InvalidInputError, match="on_unavailable"):
        RedisQuota(redis_server.url, on_unavailable="ignore")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="URL"):
        RedisQuota("http://localhost:6379")
    with pytest.raises(InvalidInputError, match=r"redis\.asyncio\.Redis"):
        RedisQuota(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="hash tag"):
        RedisQuota(redis_server.url, prefix="a{b}")
    with pytest.raises(InvalidInputError, match="lease"):
        RedisQuota(redis_server.url, lease=0)
    with pytest.raises(InvalidInputError, match="lease"):
        RedisQuota(redis_server.url, lease="1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="policy"):
        RedisQuota(redis_server.url, policy=3)  # type: ignore[arg-type]


async def test_a_client_of_its_own_is_not_closed(make: Make, redis_server: RedisServer) -> None:
    async with raw_client(redis_server.url) as raw:
        quota = make(raw)
        assert "127.0.0.1" in repr(quota)
        hook = quota.hook(KEY)
        await settle(hook, await take(hook), ok(4))
        await quota.aclose()
        await quota.aclose()
        assert await raw.ping()


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"hookapi\[redis\]"):
        RedisQuota("redis://localhost:6379/0")


def test_on_trio_it_says_it_runs_on_asyncio_only() -> None:
    async def build() -> None:
        with pytest.raises(InvalidInputError, match="asyncio only"):
            RedisQuota("redis://localhost:6379/0")

    async def use(quota: RedisQuota) -> None:
        with pytest.raises(InvalidInputError, match="asyncio only"):
            quota.hook(KEY)

    trio.run(build)
    trio.run(use, RedisQuota("redis://localhost:6379/0"))


async def test_a_paused_redis_never_holds_a_post_past_its_deadline(
    make: Make, own_redis_server: RedisServer
) -> None:
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    quota = make(own_redis_server.url, on_unavailable="raise")
    client = AsyncHookClient.from_url(
        hook.url, transport=emulator.transport(), quota=quota, retry=REAL_SECONDS
    )
    async with client, raw_client(own_redis_server.url) as raw:
        await client.post_message("before")
        await raw.client_pause(2000, all=True)
        started = anyio.current_time()
        # The deadline ends long before Redis's timeout (half a real second): it wins.
        with pytest.raises(HookAPIError) as caught:
            await client.post_message("while paused", deadline=0.05 * SCALE)
        took = anyio.current_time() - started
        await raw.client_unpause()
    assert caught.value.delivery is hookapi.Delivery.NOT_SENT
    assert took < _store.REDIS_TIMEOUT * SCALE
    assert [m.text for m in emulator.messages(hook)] == ["before"]


async def test_raise_mode_refuses_a_post_without_sending(
    make: Make, own_redis_server: RedisServer
) -> None:
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    quota = make(own_redis_server.url, on_unavailable="raise")
    client = AsyncHookClient.from_url(
        hook.url, transport=emulator.transport(), quota=quota, retry=REAL_SECONDS
    )
    async with client:
        await client.post_message("before")
        own_redis_server.stop()
        with pytest.raises(QuotaUnavailableError) as caught:
            await client.post_message("while down")
    assert caught.value.attempts == 0
    assert [m.text for m in emulator.messages(hook)] == ["before"]
    assert hook.secret not in str(caught.value)


def test_a_client_on_trio_says_redis_quota_is_asyncio_only() -> None:
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    quota = RedisQuota("redis://localhost:6379/0")

    async def post() -> None:
        client = AsyncHookClient.from_url(
            hook.url, transport=emulator.transport(), quota=quota, retry=REAL_SECONDS
        )
        async with client:
            with pytest.raises(InvalidInputError, match="asyncio only"):
                await client.post_message("hello")

    trio.run(post)
    assert emulator.messages(hook) == []
