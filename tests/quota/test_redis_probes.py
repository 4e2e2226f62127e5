"""RedisQuota's cap on refused probes: ``max_refused_probes_per_hour`` holds for the fleet.

Several ``RedisQuota`` objects stand for several processes of one hook, and then real
processes (``fleet_worker``) post through the emulator. The service refuses every request (its
quota is spent by someone else, and it sends no ``Retry-After``): left to the doubling schedule
alone, the fleet would provoke a 429 every ``max_probe_interval``; the cap allows
``max_refused_probes_per_hour`` in any hour, for all processes together. The loop and the
store's time in Redis run an hour per real second, as in ``test_redis_quota``; the processes
and the emulator run on the fleet tests' clock (``test_redis_fleet``).
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from hookapi import QuotaPolicy, RateLimit, RedisQuota
from hookapi._quota import HookQuota, NotNow, QuotaAnswer
from hookapi._redis import _store
from hookapi.cli._stage import BackgroundServer, ScaledClock, ScaledTimeLoop
from hookapi.emulator import Emulator

from .redis_server import RedisServer
from .test_redis_fleet import Fleet, GoClock
from .test_redis_quota import KEY, SCALE, ok, raw_client, settle, take

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

HOUR = 3600.0
CAP = 3
#: Short intervals, so that without the cap the fleet would be refused about once a minute.
POLICY = QuotaPolicy(probe_interval=10.0, max_probe_interval=60.0, max_refused_probes_per_hour=CAP)
#: What the service answers every request: a 429 with its headers and no Retry-After.
REFUSED = QuotaAnswer(
    status_code=429, rate_limit=RateLimit(per_hour=120, per_day=1000, remaining=0)
)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncio (redis-py's only backend) on a clock an hour per real second."""
    return ("asyncio", {"loop_factory": lambda: ScaledTimeLoop(ScaledClock(SCALE))})


Make = Callable[..., RedisQuota]


@pytest.fixture
async def make(redis_server: RedisServer) -> AsyncIterator[Make]:
    """Processes of one fleet: stores with one prefix (this test's) and the capped policy."""
    prefix = f"p{uuid.uuid4().hex[:8]}:"
    made: list[RedisQuota] = []

    def build(**options: Any) -> RedisQuota:
        options.setdefault("prefix", prefix)
        options.setdefault("policy", POLICY)
        quota = RedisQuota(redis_server.url, _time_scale=SCALE, **options)
        made.append(quota)
        return quota

    yield build
    for quota in made:
        await quota.aclose()


async def refused_while_probing(hooks: list[HookQuota], *, hours: float) -> list[tuple[float, int]]:
    """Each process asks as told and sends what it is granted; the service refuses all.

    Returns:
        When each request was refused (the loop's time, taken before the store hears of
        it), and which process sent it.
    """
    refusals: list[tuple[float, int]] = []
    end = anyio.current_time() + hours * HOUR

    async def process(index: int, hook: HookQuota) -> None:
        while anyio.current_time() < end:
            answer = await hook.reserve()
            if isinstance(answer, NotNow):
                assert answer.retry_in is not None
                assert answer.retry_in < math.inf
                await anyio.sleep(min(answer.retry_in, end - anyio.current_time()))
                continue
            assert answer.probe  # every request goes alone while the service refuses
            await anyio.sleep(1.0)  # the request's flight
            refusals.append((anyio.current_time(), index))
            await settle(hook, answer, REFUSED)

    async with anyio.create_task_group() as tg:
        for index, hook in enumerate(hooks):
            tg.start_soon(process, index, hook)
    return refusals


def most_in_any_hour(times: list[float]) -> int:
    """The most refusals in any hour: each refusal with those of the hour before it."""
    return max(sum(1 for u in times if t - HOUR < u <= t) for t in times)


async def test_three_processes_are_refused_the_cap_per_hour_in_total(make: Make) -> None:
    hooks = [make().hook(KEY) for _ in range(3)]
    refusals = await refused_while_probing(hooks, hours=3 - 1 / 6)
    times = [t for t, _ in refusals]
    who = Counter(index for _, index in refusals)
    print(f"\n[probes] {len(times)} refusals in 2h50m, by process {dict(who)}")
    # The cap holds for the fleet, in every hour (not the cap per process: 9)...
    assert most_in_any_hour(times) == CAP
    # ...and probing goes on: each hour starts again where the refusals of the last one
    # leave the window, so 2h50m hold three hours' worth.
    assert len(times) == 3 * CAP
    assert times[CAP] - times[0] >= HOUR
    # The probes went from more than one process: the refusals each one saw were shared.
    assert len(who) > 1


async def test_refusals_of_requests_in_flight_together_count_once_each(make: Make) -> None:
    one, two, three = (make().hook(KEY) for _ in range(3))
    await settle(one, await take(one), ok(10, per_hour=120))
    # Three processes send at once; all three are refused (someone else spent the quota).
    sent = [(hook, await take(hook)) for hook in (one, two, three)]
    assert not any(reservation.probe for _, reservation in sent)
    for hook, reservation in sent:
        await settle(hook, reservation, REFUSED)
    # The cap is reached: nothing goes until the first of the three refusals is an hour old,
    # whatever the doubling schedule (60 s at most) would allow.
    for hook in (one, two, three):
        waiting = await hook.reserve()
        assert isinstance(waiting, NotNow)
        assert waiting.retry_in is not None
        assert HOUR - 60.0 < waiting.retry_in <= HOUR
    await anyio.sleep(HOUR)
    probe = await take(two)
    assert probe.probe
    await settle(two, probe, ok(5, per_hour=120))
    assert await one.budget() == 5


async def test_the_refusals_key_follows_the_hook_and_lives_an_hour(
    make: Make, redis_server: RedisServer
) -> None:
    quota = make()
    hook = quota.hook(KEY)
    assert isinstance(hook, _store._RedisHook)
    await settle(hook, await take(hook), REFUSED)
    refusals_key = hook.keys[-1]
    assert refusals_key == hook.keys[0].removesuffix("state") + "refused"
    async with raw_client(redis_server.url) as raw:
        assert await raw.zcard(refusals_key) == 1
        ttl = await raw.pttl(refusals_key)
        # an hour and the margin of this store's time, in real milliseconds
        assert 0 < ttl <= math.ceil((HOUR + POLICY.margin) / SCALE * 1000)
    assert refusals_key.startswith(f"{quota._prefix}{{{KEY.hook_id}}}:")


class Answers:
    """Wraps the emulator's app: records when each answer goes out, and its status."""

    def __init__(self, app: Any, clock: Callable[[], float]) -> None:
        self._app = app
        self._clock = clock
        self.sent: list[tuple[float, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recorded(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.sent.append((self._clock(), message["status"]))
            await send(message)

        await self._app(scope, receive, recorded)


@pytest.mark.socket
def test_real_processes_are_refused_the_cap_per_hour_in_total(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"probe_interval": 10.0, "max_probe_interval": 60.0}
    monkeypatch.setenv("FLEET_POLICY", json.dumps({**options, "max_refused_probes_per_hour": CAP}))
    clock = GoClock()
    emulator = Emulator(per_hour=100, per_day=1000, clock=clock)
    hook = emulator.create_hook("Fleet")
    # The service refuses the next seven requests, whoever sends them, with no Retry-After.
    refused = 2 * CAP + 1
    emulator.fail_next(429, times=refused)
    answers = Answers(emulator.app, clock)
    background = BackgroundServer(answers, host="127.0.0.1", port=0)
    server = background.start()
    fleet = Fleet(redis_server, hook.url_for(server.url))
    try:
        workers = [fleet.spawn(f"p{n}", 2) for n in range(3)]
        clock.go()
        fleet.go(*workers)
        for worker in workers:
            worker.finish()
    finally:
        fleet.stop()
        background.stop()
    for worker in workers:
        assert worker.report["failed"] == [], worker.stderr
    assert sorted(m.text for m in emulator.messages(hook)) == [
        f"p{n} {k}" for n in range(3) for k in range(2)
    ]
    times = [t for t, status in answers.sent if status == 429]
    print(f"\n[probes] processes: 429s at {[round(t) for t in times]} (quota seconds)")
    assert len(times) == refused
    # Three processes, one cap: three 429s in the first hour, three in the next, then the
    # last one; each process on its own would have allowed three.
    assert most_in_any_hour(times) == CAP
    assert times[CAP] - times[0] >= HOUR
    assert times[2 * CAP] - times[CAP] >= HOUR
