"""The fast path: the client's request to the default pool as bytes, and what it must keep.

On asyncio, with the process's ``MemoryQuota``, no proxy and no telemetry, a post goes to the
pool as pre-built bytes and a complete 2xx answer comes back as its status and rate limit,
without ``httpx`` request or response objects. Every other answer and every failure goes on
through the general path, so each test here compares the two, or pins down a guarantee
(exact refunds, the attempt's end, one timer) on the fast one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from hookapi import APIStatusError, APITimeoutError, AsyncHookClient, HookAPIError, RetryPolicy
from hookapi._http._pool import ConnectionPool
from hookapi._quota import HookState, RateLimit

from ..test_secret_locals import frame_locals, rendered_frames
from .test_h1 import OK, VIRTUAL, Peer, Server, answering, serve

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

LIMITED = (
    b"HTTP/1.1 200 OK\r\nX-Rate-Limit-Total-Per-Hour: 60\r\nX-Rate-Limit-Total-Per-Day: 600\r\n"
    b"X-Rate-Limit-Used: 7\r\nX-Rate-Limit-Remaining: 53\r\nContent-Length: 2\r\n\r\nok"
)


@pytest.fixture
def anyio_backend() -> str:
    """Asyncio on real time: the kernel moves the bytes."""
    return "asyncio"


class GeneralPool(ConnectionPool):
    """The same pool, but not exactly the default's class: the client takes the general path."""


def client_on(
    server: Server, pool: ConnectionPool | None = None, **options: Any
) -> AsyncHookClient:
    base = server.url.rsplit("/hook/", 1)[0]
    return AsyncHookClient(hook_id="h1", secret="s" * 12, base_url=base, transport=pool, **options)


async def test_a_success_builds_no_request_or_response_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    original_request = httpx.Request.__init__
    original_response = httpx.Response.__init__

    def request(self: httpx.Request, *args: Any, **kwargs: Any) -> None:
        built.append("request")
        original_request(self, *args, **kwargs)

    def response(self: httpx.Response, *args: Any, **kwargs: Any) -> None:
        built.append("response")
        original_response(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Request, "__init__", request)
    monkeypatch.setattr(httpx.Response, "__init__", response)
    async with serve(answering(OK, LIMITED, LIMITED)) as server, client_on(server) as client:
        await client.post_message("the pool learns which loop runs it")
        built.clear()
        first = await client.post_message("one")
        second = await client.post_message("two")
        assert client.rate_limit == RateLimit(per_hour=60, per_day=600, used=7, remaining=53)
    assert built == []
    for result in (first, second):
        assert (result.status_code, result.attempts) == (200, 1)
        assert result.rate_limit == RateLimit(per_hour=60, per_day=600, used=7, remaining=53)
    assert server.connections == 1


ANSWERS = {
    "201 without rate limits": b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "200, body still coming": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
    "400 with a JSON error": (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 55\r\n"
        b'\r\n{"error":"invalid","error_description":"No such hook."}'
    ),
    "429 with Retry-After": (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nX-Rate-Limit-Remaining: 0\r\n"
        b"Content-Length: 4\r\n\r\nslow"
    ),
    "302 to the secret": (
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1/h1/ssssssssssss/message\r\n"
        b"Content-Length: 0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
async def test_every_answer_ends_as_on_the_general_path(answer: bytes) -> None:
    # The chunked body's end follows after a pause.
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.request()
        await peer.send(answer)
        if b"chunked" in answer:
            await asyncio.sleep(0.01)
            await peer.send(b"0\r\n\r\n")
        await peer.until_eof()

    outcomes: list[tuple[object, ...]] = []
    async with serve(handle) as server:  # a connection of its own for each client
        for pool in (None, GeneralPool()):
            client = client_on(server, pool, retry=RetryPolicy.disabled(), user_agent="ua/1")
            async with client:
                await client.post_message("the pool learns which loop runs it")
                assert client._transport.takes_bytes() is (pool is None)
                try:
                    result = await client.post_message("hi")
                except HookAPIError as exc:
                    fields: tuple[object, ...] = (type(exc), str(exc), exc.attempts, exc.delivery)
                    if isinstance(exc, APIStatusError):
                        fields += (exc.retry_after, exc.rate_limit, exc.location, exc.body)
                    outcomes.append(fields)
                else:
                    outcomes.append((result.status_code, result.attempts, result.rate_limit))
                outcomes.append((client.rate_limit,))
            if pool is not None:
                await pool.aclose()
    assert outcomes[:2] == outcomes[2:]
    assert server.requests[1] == server.requests[3]


async def test_a_subclass_of_the_pool_takes_the_general_path() -> None:
    async with serve(answering(OK)) as server:
        async with client_on(server) as client:
            await client.post_message("learns the loop")
            assert client._transport.takes_bytes()
        async with GeneralPool() as pool, client_on(server, pool) as client:
            assert not client._transport.takes_bytes()


async def test_the_first_post_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    events = record_quota(monkeypatch)
    async with serve(answering(OK)) as server, client_on(server) as client:
        assert client._transport.takes_bytes()  # asked before any request: the loop is learnt
        sent = client._transport.post
        posts: list[bytes] = []

        async def post(body: bytes, **kwargs: Any) -> Any:
            posts.append(body)
            return await sent(body, **kwargs)

        monkeypatch.setattr(client._transport, "post", post)
        result = await client.post_message("first")
    assert result.status_code == 200
    assert posts == [b'{"message":"first"}']
    assert events == ["answered 200"]


def test_a_pool_asked_outside_a_loop_learns_nothing() -> None:
    pool = ConnectionPool()
    assert not pool.bounds_every_wait()
    assert pool._asyncio is None  # the first request, in its loop, still picks the path


def record_quota(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each reservation of every HookState ended, in order (the fast path calls these)."""
    events: list[str] = []
    refund: Callable[..., None] = HookState.refund_now
    settle: Callable[..., None] = HookState.settle_now

    def refund_now(self: HookState, reservation: Any) -> None:
        events.append("refunded")
        refund(self, reservation)

    def settle_now(self: HookState, reservation: Any, status: int | None, *rest: Any) -> None:
        events.append("unconfirmed" if status is None else f"answered {status}")
        settle(self, reservation, status, *rest)

    monkeypatch.setattr(HookState, "refund_now", refund_now)
    monkeypatch.setattr(HookState, "settle_now", settle_now)
    return events


async def test_refunds_are_exact_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    events = record_quota(monkeypatch)
    arrived = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)  # the first answer teaches the quota
        while True:
            await peer.request()
            arrived.set()
            await peer.server.release.wait()

    async with serve(handle) as server, client_on(server, max_connections=1) as client:
        await client.post_message("learns the quota")
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.post_message, "holds the only connection")
            await arrived.wait()
            with anyio.move_on_after(0.05) as scope:
                await client.post_message("waits for a connection")
            assert scope.cancelled_caught
            tg.cancel_scope.cancel()  # the one on the wire: it may have been posted
        state = client._transport.gate().quota
        assert isinstance(state, HookState)
        assert state.in_flight == 0
    assert events == ["answered 200", "refunded", "unconfirmed"]


@VIRTUAL
async def test_a_silent_server_ends_the_attempt_at_its_timeout() -> None:
    async def silent(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.request()
        await peer.server.release.wait()

    async with serve(silent) as server, client_on(server, retry=RetryPolicy.disabled()) as client:
        await client.post_message("learns the quota")
        started = anyio.current_time()
        with pytest.raises(APITimeoutError) as caught:
            await client.post_message("never answered", timeout=30.0)
        waited = anyio.current_time() - started
    assert 30.0 <= waited < 30.1
    assert "ReadTimeout" in str(caught.value)
    assert caught.value.attempts == 1


@VIRTUAL
async def test_waits_for_a_connection_share_one_timer_and_each_ends_by_its_own_end() -> None:
    async def first_then_hold(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.request()
        await peer.server.release.wait()

    ended: dict[str, float] = {}
    async with serve(first_then_hold) as server:
        client = client_on(server, max_connections=1, retry=RetryPolicy.disabled())
        async with client:
            await client.post_message("learns the quota")
            server.arrived.clear()
            started = anyio.current_time()

            async def post(name: str, seconds: float) -> None:
                with pytest.raises(APITimeoutError) as caught:
                    await client.post_message(name, timeout=seconds)
                ended[name] = anyio.current_time() - started
                assert "PoolTimeout" in str(caught.value) or name == "holder"

            async with anyio.create_task_group() as tg:
                tg.start_soon(post, "holder", 50.0)
                await server.arrived.wait()
                tg.start_soon(post, "ten", 10.0)
                tg.start_soon(post, "twenty", 20.0)
                await anyio.sleep(1)
                tg.start_soon(post, "three", 2.0)  # ends sooner than the timer was set for
    assert 10.0 <= ended["ten"] < 10.1
    assert 20.0 <= ended["twenty"] < 20.1
    assert 3.0 <= ended["three"] < 3.1
    assert 50.0 <= ended["holder"] < 50.1


async def test_one_timer_per_connection_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_at = loop.call_at

    def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        timers.append(when)
        return call_at(when, *args, **kwargs)

    async with serve(answering(*[OK] * 21)) as server, client_on(server) as client:
        await client.post_message("learns the loop")
        monkeypatch.setattr(loop, "call_at", counting)
        for i in range(20):
            await client.post_message(f"m{i}")
        monkeypatch.undo()
    assert server.connections == 1
    assert len(timers) <= 1
    assert all(math.isfinite(when) for when in timers)


FAILURES = ("reset", "silent", "cancelled")


@VIRTUAL
@pytest.mark.parametrize("failure", FAILURES)
async def test_no_frame_of_a_failed_fast_post_holds_the_secret(failure: str) -> None:
    secret = "fastpathsecret0123456789"

    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.request()
        if failure == "reset":
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Le")
            peer.reset()
            return
        await peer.server.release.wait()

    caught: BaseException | None = None
    async with serve(handle) as server:
        base = server.url.rsplit("/hook/", 1)[0]
        client = AsyncHookClient(
            hook_id="h1", secret=secret, base_url=base, retry=RetryPolicy.disabled()
        )
        async with client:
            await client.post_message("the pool learns which loop runs it")
            assert client._transport.takes_bytes()
            if failure == "cancelled":
                task = asyncio.ensure_future(client.post_message("cancelled while it waits"))
                await server.arrived.wait()
                server.arrived.clear()
                await asyncio.sleep(1)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError as exc:
                    caught = exc
            else:
                try:
                    await client.post_message("fails", timeout=5.0)
                except HookAPIError as exc:
                    caught = exc
    assert caught is not None
    assert secret not in rendered_frames(caught).lower()
    for function, name, value in frame_locals(caught):
        if function != "test_no_frame_of_a_failed_fast_post_holds_the_secret":  # holds it
            assert secret not in value.lower(), (function, name)
