"""What a post costs Redis: one script call, TTLs set once a minute, the local view kept lazily.

Counted with Redis's own ``INFO commandstats`` on a server of the test's own (commands that a
script runs count there too), on the same fast clock as ``test_redis_quota.py``.
"""

from __future__ import annotations

import asyncio
import math
from importlib.resources import files
from typing import Any

import anyio
import pytest

from hookapi import AsyncHookClient, RedisQuota
from hookapi._quota import NotNow, Reservation
from hookapi._redis import _store
from hookapi._redis._scripts import END
from hookapi.emulator import Emulator

from .redis_server import RedisServer
from .test_redis_quota import (
    KEY,
    REAL_SECONDS,
    SCALE,
    Make,
    anyio_backend,
    make,
    ok,
    prefix,
    raw_client,
    settle,
    take,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

__all__ = ["anyio_backend", "make", "prefix"]  # fixtures shared with test_redis_quota


async def calls(url: str, command: str) -> int:
    """How many times Redis ran ``command`` since it started (or since the last reset)."""
    async with raw_client(url) as raw:
        stats: dict[str, Any] = await raw.info("commandstats")
    found = stats.get(f"cmdstat_{command}")
    return int(found["calls"]) if found else 0


async def test_each_post_is_one_script_call(
    make: Make, own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No settle goes on its own here (that is the next test's): every one rides or waits.
    monkeypatch.setattr(_store, "END_DELAY", 10.0)
    emulator = Emulator(per_hour=1000, per_day=10000)
    hook = emulator.create_hook("Ops")
    quota = make(own_redis_server.url, lease=60 * SCALE)  # no lease runs out on a slow machine
    client = AsyncHookClient.from_url(
        hook.url, transport=emulator.transport(), quota=quota, retry=REAL_SECONDS
    )
    async with client:
        await client.post_message("first")
        (shared,) = quota._here().hooks.values()
        await shared.flush()  # both scripts loaded: redis-py's first EVALSHA of each fails
        before = await calls(own_redis_server.url, "evalsha")
        for n in range(10):
            await client.post_message(f"message {n}")
        during = await calls(own_redis_server.url, "evalsha") - before
    await quota.aclose()  # the last settle goes on its own
    after = await calls(own_redis_server.url, "evalsha") - before
    # Each post's reservation carries the previous post's settle: ten posts, ten calls (two
    # each before), and the last settle reaches Redis when the store closes.
    assert during == 10
    assert after == 11
    async with raw_client(own_redis_server.url) as raw:
        keys = await raw.keys(f"*{{{hook.id}}}*state")
        assert len(keys) == 1
        state = await raw.hgetall(keys[0])
    assert int(float(state[b"settled"])) == 11


async def test_a_settle_no_reservation_follows_reaches_redis_on_its_own(
    make: Make, redis_server: RedisServer
) -> None:
    one: Any = make().hook(KEY)
    two = make().hook(KEY)
    await settle(one, await take(one), ok(5))
    reservation = await take(one)
    await one.settle(reservation, ok(3))  # no flush, and no reservation after it
    # Its timer comes before this sleep ends (the loop runs timers in order of their time),
    # and sends it on its own: no reservation and no flush carried it.
    await anyio.sleep(2 * _store.END_DELAY * SCALE)
    assert one._ends == []
    while one._pending:
        await asyncio.wait(set(one._pending))
    assert await two.budget() == 3


async def test_keys_get_a_ttl_when_created_and_a_refresh_about_once_a_minute(
    make: Make, own_redis_server: RedisServer
) -> None:
    quota = make(own_redis_server.url)
    hook: Any = quota.hook(KEY)
    await settle(hook, await take(hook), ok(100))
    async with raw_client(own_redis_server.url) as raw:
        # The fleet's last refresh, as if it had just been: none is due during this test.
        await raw.hset(hook.keys[0], "ttl", repr(1e300))
        before = await calls(own_redis_server.url, "pexpire")
        for _ in range(20):
            await settle(hook, await take(hook), ok(100))
        expiries = await calls(own_redis_server.url, "pexpire") - before
        # Forty calls: eight PEXPIREs each would be 320. Without a refresh, only the keys a
        # write may have created get one: the first reservation in flight, a new time bucket
        # (its count, its start, the day's), a new field of the state.
        assert expiries <= 4 * 20
        for key in await raw.keys("*"):
            ttl = await raw.pttl(key)
            assert 0 < ttl <= math.ceil((86400 + 3600) / SCALE * 1000)
        # A refresh that is due sets every key's TTL (but the refusals'), once.
        await raw.hset(hook.keys[0], "ttl", "0")
        before = await calls(own_redis_server.url, "pexpire")
        await take(hook)
        assert await calls(own_redis_server.url, "pexpire") - before >= 8
        refreshed = await raw.hget(hook.keys[0], "ttl")
        assert refreshed is not None
        assert float(refreshed) > 0


async def test_a_second_attempt_of_an_end_is_applied_once(
    make: Make, redis_server: RedisServer
) -> None:
    quota = make()
    hook: Any = quota.hook(KEY)  # the store's own hook: its key names, its flush
    await settle(hook, await take(hook), ok(5))
    reservation = await take(hook)
    token: Any = reservation.token
    await settle(hook, reservation, ok(9))
    assert await hook.budget() == 9
    # A reservation call carrying this settle was cancelled: whether Redis ran it is unknown,
    # so it goes again, guarded: applied only if the reservation is still in flight.
    again = f"settle|{token.name}|1|{token.started}|{token.seq}|{token.before}|0||||20"
    await quota._call("end", END, hook._keys, [again])
    assert await hook.budget() == 9
    async with raw_client(redis_server.url) as raw:
        state = await raw.hgetall(hook.keys[0])
    assert int(float(state[b"settled"])) == 2


async def test_a_cancelled_reservation_gives_its_slot_and_its_ends_back_once(
    make: Make, redis_server: RedisServer
) -> None:
    one: Any = make().hook(KEY)
    two = make().hook(KEY)
    await settle(one, await take(one), ok(5))
    first = await take(one)
    await one.settle(first, ok(4))  # rides with the next reservation
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled at its first await: the call may or may not have run
        await one.reserve()
    await one.flush()
    # The settle counted once, the cancelled reservation holds nothing.
    assert await two.budget() == 4
    async with raw_client(redis_server.url) as raw:
        state = await raw.hgetall(one.keys[0])
        assert await raw.zcard(one.keys[3]) == 0  # nothing in flight
    assert int(float(state[b"settled"])) == 2


async def test_a_shared_reservation_in_flight_holds_a_local_slot_when_redis_fails(
    make: Make, own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "RECONNECT_INTERVAL", 0.01)
    quota = make(own_redis_server.url)
    hook = quota.hook(KEY)
    await settle(hook, await take(hook), ok(3))
    flying = await take(hook)
    own_redis_server.stop()
    # The local view learns the last answer (3 remaining) and the request still in flight.
    assert await hook.budget() == 2
    local = await take(hook)
    assert not quota.available
    assert await hook.budget() == 1
    await hook.settle(flying, ok(1))
    assert await hook.budget() == 0
    await hook.refund(local)
    assert await hook.budget() == 1
    assert isinstance(await hook.reserve(), Reservation)
    assert isinstance(await hook.reserve(), NotNow)


def test_the_scripts_ship_as_lua_files_in_the_package() -> None:
    here = files("hookapi._redis")
    names = sorted(p.name for p in here.iterdir() if p.name.endswith(".lua"))
    assert names == ["_ends.lua", "_prelude.lua", "budget.lua", "end.lua", "reserve.lua"]
    assert END.endswith((here / "end.lua").read_text(encoding="utf-8"))
    assert isinstance(RedisQuota, type)
