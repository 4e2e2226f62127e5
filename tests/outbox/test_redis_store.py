"""RedisStore against a real redis-server: one queue per hook, shared by several outboxes.

Two outboxes on two stores stand for two processes (each has its own connection and its own
lease token). Nothing here waits for a lease to run out: a lease "ends" by deleting its key,
as Redis does when its time is up. The loop is asyncio's (redis-py's only backend) on the
real clock: every wait is for Redis or the in-process emulator, bounded by ``fail_after``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio
import trio
from redis.crc import key_slot

import hookapi
from hookapi import (
    AsyncHookClient,
    Delivery,
    InvalidInputError,
    Outbox,
    ReceiptState,
    RedisQuota,
    RedisStore,
    StoreError,
    StoreUnavailableError,
)
from hookapi.emulator import Emulator, Hook
from hookapi.outbox._stores import LeaseLostError, StoredState
from hookapi.testing import make_client

from ..quota.redis_server import RedisServer, redis_server_binary

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

#: Real seconds any wait here may take before the test fails (it takes milliseconds).
BOUND = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_server_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, with an append-only file synced at every write."""
    server = RedisServer(redis_server_binary(), tmp_path, appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """Keys of this test only, on the module's server."""
    return f"t{uuid.uuid4().hex[:8]}:"


Make = Callable[..., RedisStore]


@pytest.fixture
def make(redis_server: RedisServer, prefix: str) -> Make:
    def build(url: str | None = None, **options: Any) -> RedisStore:
        options.setdefault("prefix", prefix)
        options.setdefault("lease", 5.0)
        options.setdefault("poll_interval", 0.005)
        return RedisStore(url or redis_server.url, **options)

    return build


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(per_hour=100_000, per_day=1_000_000)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Fleet")


def texts(emulator: Emulator) -> list[str]:
    return [message.text for message in emulator.messages()]


async def until(check: Callable[[], bool]) -> None:
    """Wait (polling every few milliseconds) until ``check()`` holds."""
    with anyio.fail_after(BOUND):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.002)


def lease_key(store: RedisStore) -> str:
    return next(key for key in store.keys if key.endswith(":lease"))


async def test_two_processes_share_one_queue_in_the_order_redis_accepted(
    make: Make, emulator: Emulator, hook: Hook
) -> None:
    one = Outbox(make_client(emulator, hook), store=make())
    two = Outbox(make_client(emulator, hook), store=make())
    async with one, two:
        receipts = []
        for n in range(10):
            outbox = one if n % 2 == 0 else two
            receipts.append(await outbox.put(f"m{n}"))
        with anyio.fail_after(BOUND):
            results = [await receipt.wait() for receipt in receipts]
        # Exactly one of them delivered; both learnt how their own messages ended.
        assert [one.delivering, two.delivering].count(True) == 1
    assert [r.id for r in receipts] == sorted(r.id for r in receipts)
    assert texts(emulator) == [f"m{n}" for n in range(10)]
    assert all(r.state is ReceiptState.DELIVERED for r in receipts)
    assert all(result.status_code == 200 for result in results)
    assert one.pending == two.pending == []


async def test_concurrency_holds_for_the_fleet(make: Make, emulator: Emulator, hook: Hook) -> None:
    outboxes = [Outbox(make_client(emulator, hook), store=make(), concurrency=2) for _ in range(3)]
    async with outboxes[0], outboxes[1], outboxes[2]:
        receipts = [await outboxes[n % 3].put(f"m{n}") for n in range(30)]
        with anyio.fail_after(BOUND):
            for receipt in receipts:
                await receipt.wait()
        assert sum(outbox.delivering for outbox in outboxes) == 1
        # Only the holder's senders ever ran: the others never started one.
        assert sum(bool(outbox._sending) for outbox in outboxes) == 0
    assert sorted(texts(emulator)) == sorted(f"m{n}" for n in range(30))


async def test_a_closing_deliverer_hands_the_queue_over_at_once(
    make: Make, emulator: Emulator, hook: Hook
) -> None:
    first = Outbox(make_client(emulator, hook), store=make(lease=3600.0))
    second = Outbox(make_client(emulator, hook), store=make(lease=3600.0))
    async with second:
        async with first:
            await until(lambda: first.delivering or second.delivering)
        # Whoever held it, the lease is free or the second's: an hour's lease is no wait.
        receipt = await second.put("after")
        with anyio.fail_after(BOUND):
            await receipt.wait()
        assert second.delivering
    assert texts(emulator) == ["after"]


async def test_a_stale_deliverer_cannot_record_over_the_new_one(
    make: Make, raw: redis.asyncio.Redis
) -> None:
    key = hookapi._quota.HookKey(base_url="https://hooks.example.test/v1", hook_id="fence-1")
    old, new = make(), make()
    await old.open_shared(key)
    await new.open_shared(key)
    try:
        id = await old.add("m", expires_at=None)
        assert await old.acquire() is None
        assert await new.acquire() is not None  # held: it says how long until free
        (row,) = await old.claim(0)
        await old.update(row.id, StoredState.SENDING)
        await raw.delete(lease_key(old))  # the old holder's lease ran out (a long pause)
        assert await new.acquire() is None
        with pytest.raises(LeaseLostError):
            await old.finish(id, "delivered|200|1|0.1")
        assert not old.holds_lease
        with pytest.raises(LeaseLostError):
            await old.claim(0)
        # The new holder finds the message as the old one left it, and ends it alone.
        (again,) = await new.claim(0)
        assert (again.id, again.state) == (id, StoredState.SENDING)
        await new.finish(id, "delivered|200|1|0.1")
        assert await new.claim(0) == []
        assert not await old.renew()
        assert await new.renew()
    finally:
        await old.aclose()
        await new.aclose()


async def test_at_least_once_the_next_holder_sends_again_what_a_dead_one_was_sending(
    make: Make, raw: redis.asyncio.Redis, emulator: Emulator, hook: Hook
) -> None:
    base = str(make_client(emulator, hook)._base_url)
    key = hookapi._quota.HookKey(base_url=base, hook_id=hook.id)
    dead = make()
    await dead.open_shared(key)
    await dead.add("first", expires_at=None)
    await dead.add("second", expires_at=None)
    assert await dead.acquire() is None
    (row, _) = await dead.claim(0)
    await dead.update(row.id, StoredState.SENDING)  # and then it died mid-send
    await raw.delete(lease_key(dead))
    await dead.aclose()
    async with Outbox(make_client(emulator, hook), store=make()) as outbox:
        await until(lambda: len(emulator.messages()) == 2)
        assert outbox.failed() == []
    assert texts(emulator) == ["first", "second"]


async def test_at_most_once_a_message_being_sent_by_a_dead_holder_is_an_unknown_dead_letter(
    make: Make, raw: redis.asyncio.Redis, emulator: Emulator, hook: Hook
) -> None:
    client = make_client(emulator, hook)
    key = hookapi._quota.HookKey(base_url=str(client._base_url), hook_id=hook.id)
    dying = make()
    await dying.open_shared(key)
    assert await dying.acquire() is None
    producer = Outbox(client, store=make(), delivery="at_most_once")
    async with producer:
        receipt = await producer.put("maybe")
        (row,) = await dying.claim(0)
        await dying.update(row.id, StoredState.SENDING)  # on the wire when it died
        await raw.delete(lease_key(dying))
        await dying.aclose()
        heir = Outbox(make_client(emulator, hook), store=make(), delivery="at_most_once")
        async with heir:
            # The producer learns through Redis how its message ended, as any process does.
            with anyio.fail_after(BOUND), pytest.raises(hookapi.HookAPIError) as caught:
                await receipt.wait()
            assert caught.value.delivery is Delivery.UNKNOWN
            assert receipt.state is ReceiptState.UNKNOWN
            await until(lambda: [d.text for d in heir.failed()] == ["maybe"])
            await until(lambda: [d.text for d in producer.failed()] == ["maybe"])
            assert producer.failed()[0].state is ReceiptState.UNKNOWN
    assert texts(emulator) == []  # never sent again


async def test_dead_letters_are_shared_retry_and_discard_from_any_process(
    make: Make, emulator: Emulator, hook: Hook
) -> None:
    one = Outbox(make_client(emulator, hook), store=make())
    two = Outbox(make_client(emulator, hook), store=make())
    async with one, two:
        await until(lambda: one.delivering or two.delivering)
        if one.delivering:  # `one` puts, the other delivers: its receipts settle from Redis
            one, two = two, one
        emulator.fail_next(400, times=2)
        bad = [await one.put("bad one"), await one.put("bad two")]
        for receipt in bad:
            with anyio.fail_after(BOUND), pytest.raises(hookapi.HookAPIError):
                await receipt.wait()
        assert {r.state for r in bad} == {ReceiptState.FAILED}
        assert all(r.error is not None and r.error.delivery is Delivery.REJECTED for r in bad)
        assert all("400" in str(r.error) for r in bad)
        # The other process sees them, and retries one: it goes once, to the end of the queue.
        await until(lambda: len(two.failed()) == 2 and len(one.failed()) == 2)
        first, second = two.failed()
        again = await two.retry(first)
        with anyio.fail_after(BOUND):
            await again.wait()
        with pytest.raises(KeyError):
            await one.retry(first.id)  # retried already: nothing to retry twice
        await one.discard(second)
        with pytest.raises(KeyError):
            await two.discard(second.id)
        await until(lambda: one.failed() == [] and two.failed() == [])
    assert texts(emulator) == ["bad one"]


async def test_put_with_redis_down_raises_at_once_and_the_deliverer_resumes_when_back(
    aof_server: RedisServer, prefix: str, emulator: Emulator, hook: Hook, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    store = RedisStore(aof_server.url, prefix=prefix, lease=0.6, poll_interval=0.005)
    async with Outbox(make_client(emulator, hook), store=store) as outbox:
        first = await outbox.put("before")
        with anyio.fail_after(BOUND):
            await first.wait()
        aof_server.stop()
        with pytest.raises(StoreUnavailableError) as caught:
            await outbox.put("while down")
        assert caught.value.path == aof_server.url.rsplit("/", 1)[0]
        await until(lambda: not outbox.delivering)
        assert [r.text for r in outbox.pending] == []  # nothing was accepted
        aof_server.start()
        await until(lambda: outbox.delivering)
        after = await outbox.put("after")
        with anyio.fail_after(BOUND):
            await after.wait()
    assert texts(emulator) == ["before", "after"]
    said = [r.getMessage() for r in caplog.records]
    assert any("stops delivering the shared queue" in line for line in said), said
    assert any("answers again" in line for line in said), said


async def test_redis_killed_with_aof_always_keeps_every_acknowledged_message(
    aof_server: RedisServer, prefix: str, emulator: Emulator, hook: Hook
) -> None:
    # No deliverer while Redis dies: a store that puts and never takes the lease.
    key = hookapi._quota.HookKey(base_url="https://hooks.example.test/v1", hook_id="aof-1")
    store = RedisStore(aof_server.url, prefix=prefix, poll_interval=0.005)
    await store.open_shared(key)
    acknowledged = [await store.add(f"m{n}", expires_at=None) for n in range(200)]
    aof_server.kill()  # SIGKILL: no shutdown, no last save
    aof_server.start()
    try:
        assert await store.acquire() is None
        rows = await store.claim(0)
    finally:
        await store.aclose()
    assert [row.id for row in rows] == acknowledged
    assert [row.text for row in rows] == [f"m{n}" for n in range(200)]


async def test_keys_name_the_hook_never_the_secret_in_one_slot_and_expire_where_they_may(
    make: Make, raw: redis.asyncio.Redis, emulator: Emulator, hook: Hook, prefix: str
) -> None:
    client = make_client(emulator, hook)
    store = make()
    async with Outbox(client, store=store) as outbox:
        emulator.fail_next(400)
        failed = await outbox.put("refused")
        delivered = await outbox.put("posted")
        with anyio.fail_after(BOUND):
            await delivered.wait()
        assert failed.state is ReceiptState.FAILED
        found = sorted(
            k.decode() if isinstance(k, bytes) else k for k in await raw.keys(f"{prefix}*")
        )
        assert found
        assert all(k.startswith(f"{prefix}{{{hook.id}}}:") for k in found)
        assert all(hook.secret not in k for k in found)
        assert len({key_slot(k.encode()) for k in found}) == 1
        ttl = {k.rsplit(":", 1)[1]: await raw.pttl(k) for k in found}
        assert 0 < ttl["lease"] <= 5000
        assert 0 < ttl["owner"] <= 5000
        assert ttl["outcome"] > 0
        # The queue, the dead letters and the counters never expire: losing them loses mail.
        for name in ("seq", "msgs", "state", "reason", "dead", "deadver", "fence"):
            assert ttl[name] == -1, name


async def test_it_works_with_a_redis_quota(
    make: Make, redis_server: RedisServer, emulator: Emulator, hook: Hook, prefix: str
) -> None:
    quota = RedisQuota(redis_server.url, prefix=f"{prefix}quota:")
    async with quota:
        client = make_client(emulator, hook, quota=quota)
        async with Outbox(client, store=make()) as outbox:
            receipts = [await outbox.put(f"m{n}") for n in range(5)]
            with anyio.fail_after(BOUND):
                for receipt in receipts:
                    await receipt.wait()
    assert texts(emulator) == [f"m{n}" for n in range(5)]


async def test_wait_replicas_confirms_or_raises(
    make: Make, redis_server: RedisServer, tmp_path: Path, emulator: Emulator, hook: Hook
) -> None:
    # No replica: WAIT times out (50 ms), and put says the message is not confirmed.
    lonely = Outbox(make_client(emulator, hook), store=make(wait_replicas=1, timeout=0.05))
    async with lonely:
        with pytest.raises(StoreUnavailableError, match="0 of 1 replica"):
            await lonely.put("unconfirmed")
    replica = RedisServer(redis_server_binary(), tmp_path)
    replica.start()
    try:
        async with redis.asyncio.Redis.from_url(replica.url) as admin:
            async with redis.asyncio.Redis.from_url(redis_server.url) as primary:
                await primary.config_set("repl-diskless-sync-delay", 0)  # not 5 s
            await admin.execute_command(  # type: ignore[no-untyped-call]
                "REPLICAOF", "127.0.0.1", redis_server.port
            )
            with anyio.fail_after(BOUND):
                while (await admin.info("replication"))["master_link_status"] != "up":  # noqa: ASYNC110
                    await anyio.sleep(0.01)
        confirmed = Outbox(make_client(emulator, hook), store=make(wait_replicas=1, timeout=5))
        async with confirmed:
            receipt = await confirmed.put("confirmed")
            with anyio.fail_after(BOUND):
                await receipt.wait()
    finally:
        replica.stop()
    assert "confirmed" in texts(emulator)


def test_options_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="URL"):
        RedisStore("http://localhost")
    with pytest.raises(InvalidInputError, match="hash tag"):
        RedisStore("redis://localhost", prefix="a{b}")
    with pytest.raises(InvalidInputError, match="lease"):
        RedisStore("redis://localhost", lease=0)
    with pytest.raises(InvalidInputError, match="third of the lease"):
        RedisStore("redis://localhost", lease=1.0, poll_interval=0.5)
    with pytest.raises(InvalidInputError, match="wait_replicas"):
        RedisStore("redis://localhost", wait_replicas=-1)
    with pytest.raises(InvalidInputError, match="takes a Redis URL"):
        RedisStore(42)  # type: ignore[arg-type]
    client = AsyncHookClient.from_url("https://hooks.example.test/v1/h1/" + "s" * 32)
    with pytest.raises(InvalidInputError, match="drop_oldest"):
        Outbox(client, store=RedisStore("redis://localhost"), on_full="drop_oldest")
    assert repr(RedisStore("redis://user:pw@localhost:6379/0")) == (
        "<RedisStore redis://localhost:6379 prefix='hookapi:'>"
    )


async def test_a_plain_open_is_refused(make: Make) -> None:
    with pytest.raises(StoreError, match="opened by an Outbox"):
        await make().open()


def test_on_trio_it_says_it_runs_on_asyncio_only() -> None:
    async def build() -> None:
        RedisStore("redis://localhost:6379/0")

    with pytest.raises(InvalidInputError, match="asyncio only"):
        trio.run(build)

    async def use(store: RedisStore) -> None:
        client = AsyncHookClient.from_url("https://hooks.example.test/v1/h1/" + "s" * 32)
        async with Outbox(client, store=store):
            pass

    with pytest.raises(InvalidInputError, match="asyncio only"):
        trio.run(use, RedisStore("redis://localhost:6379/0"))


async def test_a_redis_that_lost_everything_gives_no_old_holder_its_lease_back(
    make: Make, raw: redis.asyncio.Redis, prefix: str
) -> None:
    key = hookapi._quota.HookKey(base_url="https://hooks.example.test/v1", hook_id="reset-1")
    old, new = make(), make()
    await old.open_shared(key)
    await new.open_shared(key)
    try:
        assert await old.acquire() is None
        for name in await raw.keys(f"{prefix}*"):
            await raw.delete(name)  # a restart without persistence: the counter starts again
        assert await new.acquire() is None
        # The old holder's token (counter 1 too) is not the new one's: it stays out.
        assert await old.acquire() is not None
        with pytest.raises(LeaseLostError):
            await old.claim(0)
        assert await new.claim(0) == []
    finally:
        await old.aclose()
        await new.aclose()


async def test_a_ttl_that_passes_on_the_deliverer_drops_the_message_for_its_producer(
    make: Make, emulator: Emulator, hook: Hook
) -> None:
    holder = Outbox(make_client(emulator, hook), store=make())
    async with holder:
        await until(lambda: holder.delivering)
        holder.pause()
        producer = Outbox(make_client(emulator, hook), store=make(), max_size=1, on_full="raise")
        async with producer:
            short = await producer.put("late", ttl=0.05)
            with pytest.raises(hookapi.OutboxFullError):
                await producer.put("no room")  # max_size counts this process's messages
            await anyio.sleep(0.06)  # the ttl passes while the holder is paused
            holder.resume()
            with anyio.fail_after(BOUND), pytest.raises(hookapi.MessageDroppedError):
                await short.wait()
            assert short.state is ReceiptState.DROPPED
            kept = await producer.put("in time")
            with anyio.fail_after(BOUND):
                await kept.wait()
    assert texts(emulator) == ["in time"]


async def test_a_deliverer_whose_lease_was_taken_stops_and_takes_it_back_once_free(
    make: Make, raw: redis.asyncio.Redis, emulator: Emulator, hook: Hook
) -> None:
    client = make_client(emulator, hook)
    outbox = Outbox(client, store=make(lease=0.3))
    async with outbox:
        await until(lambda: outbox.delivering)
        intruder = make()
        await intruder.open_shared(
            hookapi._quota.HookKey(base_url=str(client._base_url), hook_id=hook.id)
        )
        try:
            # The outbox's lease runs out (a long pause) and the intruder takes it; should the
            # outbox take it back first, at its renewal, it runs out again.
            with anyio.fail_after(BOUND):
                await raw.delete(lease_key(intruder))
                while await intruder.acquire() is not None:
                    await raw.delete(lease_key(intruder))
            await until(lambda: not outbox.delivering)  # its next renewal is refused
            waiting = await outbox.put("waits")
            (row,) = await intruder.claim(0)
            assert row.text == "waits"
            assert texts(emulator) == []  # the intruder holds the queue and sends nothing
            await intruder.release()
        finally:
            await intruder.aclose()
        with anyio.fail_after(BOUND):
            await waiting.wait()
        assert outbox.delivering
    assert texts(emulator) == ["waits"]


async def test_a_client_given_stays_open(
    redis_server: RedisServer, prefix: str, emulator: Emulator, hook: Hook
) -> None:
    given = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        store = RedisStore(given, prefix=prefix, poll_interval=0.005)
        assert (
            repr(store) == f"<RedisStore redis://127.0.0.1:{redis_server.port} prefix={prefix!r}>"
        )
        async with Outbox(make_client(emulator, hook), store=store) as outbox:
            receipt = await outbox.put("through a given client")
            with anyio.fail_after(BOUND):
                await receipt.wait()
        assert await given.ping()
    finally:
        await given.aclose()
    assert texts(emulator) == ["through a given client"]
