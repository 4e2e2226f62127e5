"""An attempt's timeout bounds the attempt as a whole, however slowly a hostile server trickles.

A loopback server in the test's own event loop sends its answer a byte every 0.5 s of the
loop's virtual clock (asyncio and trio), so the trickle and the client's timeouts run on one
clock and no result depends on the machine's speed.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import anyio
import anyio.abc
import httpcore
import pytest

from hookapi import APITimeoutError, AsyncHookClient, Delivery, RetryPolicy
from hookapi._http._core import _Bound, _BoundStream
from hookapi.outbox import Outbox

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

HOOK = "35d7bef2-3d7e-11ec-bfa2-42010a200115/" + "aa84c7c4" * 8
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"


async def _read_request(stream: anyio.abc.ByteStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive()


async def _trickle(stream: anyio.abc.ByteStream, data: bytes) -> None:
    for i in range(len(data)):
        await stream.send(data[i : i + 1])
        await anyio.sleep(0.5)


def body_trickler(requests: list[float]) -> Callable[[anyio.abc.ByteStream], Awaitable[None]]:
    """Answers 200 at once, then its million-byte body a byte every 0.5 s."""

    async def handle(stream: anyio.abc.ByteStream) -> None:
        while True:
            await _read_request(stream)
            requests.append(anyio.current_time())
            await stream.send(HEAD)
            await _trickle(stream, b"o" * 1_000_000)

    return handle


def head_trickler(requests: list[float]) -> Callable[[anyio.abc.ByteStream], Awaitable[None]]:
    """Sends even its status line a byte every 0.5 s."""

    async def handle(stream: anyio.abc.ByteStream) -> None:
        await _read_request(stream)
        requests.append(anyio.current_time())
        await _trickle(stream, HEAD)

    return handle


@asynccontextmanager
async def serving(
    handler: Callable[[anyio.abc.ByteStream], Awaitable[None]],
) -> AsyncIterator[str]:
    async def guarded(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await handler(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, guarded)
        yield f"http://127.0.0.1:{port}/hooks/{HOOK}"
        tasks.cancel_scope.cancel()


@pytest.mark.parametrize("deadline", [60.0, math.inf])
async def test_a_200_whose_body_trickles_is_posted_when_its_attempt_times_out(
    deadline: float,
) -> None:
    requests: list[float] = []
    async with serving(body_trickler(requests)) as url, AsyncHookClient.from_url(url) as client:
        started = anyio.current_time()
        result = await client.post_message("hi", timeout=2.0, deadline=deadline)
        elapsed = anyio.current_time() - started
    assert result.status_code == 200
    assert result.attempts == 1
    print("DEBUG end", requests)
    assert len(requests) == 1
    assert elapsed == pytest.approx(2.0, abs=0.01)  # the attempt's bound, not the deadline


async def test_an_answer_whose_head_trickles_times_out_with_its_attempt() -> None:
    requests: list[float] = []
    policy = RetryPolicy(max_attempts=1)
    async with (
        serving(head_trickler(requests)) as url,
        AsyncHookClient.from_url(url, retry=policy) as client,
    ):
        started = anyio.current_time()
        with pytest.raises(APITimeoutError) as caught:
            await client.post_message("hi", timeout=2.0, deadline=60.0)
        elapsed = anyio.current_time() - started
    assert caught.value.delivery is Delivery.UNKNOWN
    assert "attempt's timeout" in str(caught.value)
    assert elapsed == pytest.approx(2.0, abs=0.01)


async def test_an_outbox_delivers_through_a_trickling_200() -> None:
    requests: list[float] = []
    delivered: list[int] = []
    async with serving(body_trickler(requests)) as url:
        client = AsyncHookClient.from_url(url, timeout=2.0)
        async with client, Outbox(client) as outbox:
            receipt = await outbox.put("hi")
            with anyio.move_on_after(60):
                delivered.append((await receipt.wait()).status_code)
    assert delivered == [200]
    assert len(requests) == 1


class _Timing(httpcore.AsyncNetworkStream):
    """An inner stream whose every read and write times out, recording the timeouts given."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        self.timeouts.append(timeout)
        raise httpcore.ReadTimeout("inner")

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.timeouts.append(timeout)
        raise httpcore.WriteTimeout("inner")

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        self.timeouts.append(timeout)
        return self


async def test_the_bound_stream_shortens_each_timeout_and_names_the_attempts_end() -> None:
    bound = _Bound()
    inner = _Timing()
    stream = await _BoundStream(inner, bound).start_tls(ssl.create_default_context(), "h", 9.0)
    assert stream.get_extra_info("nothing") is None
    assert inner.timeouts == [9.0]  # no end yet: as given
    bound.ends = anyio.current_time() + 3.0
    for call in (stream.read(10, 5.0), stream.write(b"x", None)):
        with pytest.raises(httpcore.TimeoutException, match=r"^inner$"):  # its own timeout
            await call
    assert inner.timeouts[1:] == [3.0, 3.0]
    bound.ends = anyio.current_time()  # the attempt's time is up
    for call in (stream.read(10, 5.0), stream.write(b"x", 5.0)):
        with pytest.raises(httpcore.TimeoutException, match="attempt's timeout"):
            await call
    assert inner.timeouts[3:] == [0.0, 0.0]
    await bound.sleep(0)


def warm_then(
    then: Callable[[anyio.abc.ByteStream], Awaitable[None]],
) -> Callable[[anyio.abc.ByteStream], Awaitable[None]]:
    """Answers the first request at once, then hands the connection to ``then``."""

    async def handle(stream: anyio.abc.ByteStream) -> None:
        await _read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await then(stream)

    return handle


async def _silent(stream: anyio.abc.ByteStream) -> None:
    await _read_request(stream)
    await anyio.sleep_forever()


async def _stalled_body(stream: anyio.abc.ByteStream) -> None:
    await _read_request(stream)
    await stream.send(HEAD + b"o")
    await anyio.sleep_forever()


@pytest.mark.parametrize("then", [_silent, _stalled_body], ids=["no answer", "stalled 200 body"])
async def test_a_deadline_shorter_than_the_timeout_ends_the_call_as_a_deadline(
    then: Callable[[anyio.abc.ByteStream], Awaitable[None]], anyio_backend_name: str
) -> None:
    # On asyncio the default pool's own timers keep the deadline (no cancel scope); on trio a
    # cancel scope does. Either way the call ends at its deadline, with the same error.
    async with (
        serving(warm_then(then)) as url,
        AsyncHookClient.from_url(url, retry=RetryPolicy(max_attempts=1)) as client,
    ):
        await client.post_message("warm")  # the pool learns which path it takes
        assert client._transport.bounds_every_wait() is (anyio_backend_name == "asyncio")
        started = anyio.current_time()
        with pytest.raises(APITimeoutError) as caught:
            await client.post_message("hi", timeout=30.0, deadline=5.0)
        elapsed = anyio.current_time() - started
    assert str(caught.value) == (
        f"POST {client.url} did not finish within its 5 s deadline. "
        "(1 attempt) The message may or may not have been posted."
    )
    assert caught.value.delivery is Delivery.UNKNOWN
    assert caught.value.attempts == 1
    assert elapsed == pytest.approx(5.0, abs=0.01)
