"""Exact refunds: a reservation counts only if bytes of its request may have reached the network.

The default pool says when it starts writing (the ``hookapi.on_write`` request extension) on
both of its paths; a transport that says nothing is assumed to send as soon as it is called.
Real sockets on loopback, real time.
"""

from __future__ import annotations

import anyio
import httpx
import pytest

from hookapi import APIConnectionError, AsyncHookClient, RetryPolicy
from hookapi._quota import HookKey, HookQuota, MemoryQuota, NotNow, QuotaAnswer, Reservation

from .test_pool import HOOK, SECRET, serving

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Real sockets need real time."""
    return str(request.param)


class Recording:
    """A hook's in-memory quota that writes down how each reservation ended."""

    def __init__(self, inner: HookQuota, events: list[str]) -> None:
        self._inner = inner
        self._events = events

    async def reserve(self) -> Reservation | NotNow:
        return await self._inner.reserve()

    async def refund(self, reservation: Reservation) -> None:
        self._events.append("refunded")
        await self._inner.refund(reservation)

    async def settle(self, reservation: Reservation, answer: QuotaAnswer | None) -> None:
        self._events.append("unconfirmed" if answer is None else f"answered {answer.status_code}")
        await self._inner.settle(reservation, answer)

    async def budget(self) -> float:
        return await self._inner.budget()


class Recorder(MemoryQuota):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def hook(self, key: HookKey) -> Recording:
        return Recording(super().hook(key), self.events)


async def test_the_pool_signals_its_writes_so_a_sent_request_counts_once() -> None:
    recorder = Recorder()
    async with serving() as server:
        client = AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url, quota=recorder)
        async with client:
            result = await client.post_message("sent")
    assert result.attempts == 1  # known sent only because the pool said it wrote
    assert recorder.events == ["answered 200"]


async def test_waiting_for_a_connection_when_cancelled_is_refunded() -> None:
    recorder = Recorder()
    async with serving() as server:
        client = AsyncHookClient(
            hook_id=HOOK, secret=SECRET, base_url=server.url, quota=recorder, max_connections=1
        )
        async with client:
            await client.post_message("learns the quota")
            server.hold, server.arrived = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.post_message, "holds the only connection")
                await server.arrived.wait()
                with anyio.move_on_after(0.2) as scope:
                    await client.post_message("waits for a connection")
                assert scope.cancelled_caught
                # and one cancelled after its bytes were written: it may have been posted
                assert recorder.events == ["answered 200", "refunded"]
                server.hold.set()
            server.hold, server.arrived = anyio.Event(), anyio.Event()
            with anyio.move_on_after(5) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.post_message, "written, then cancelled")
                    await server.arrived.wait()
                    tg.cancel_scope.cancel()
            server.hold.set()
    assert recorder.events == ["answered 200", "refunded", "answered 200", "unconfirmed"]


async def test_a_refused_connection_is_refunded() -> None:
    recorder = Recorder()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nobody listens there now
    client = AsyncHookClient(
        hook_id=HOOK,
        secret=SECRET,
        base_url=f"http://127.0.0.1:{port}",
        quota=recorder,
        retry=RetryPolicy.disabled(),
    )
    async with client:
        with pytest.raises(APIConnectionError) as caught:
            await client.post_message("x")
    assert caught.value.attempts == 0
    assert recorder.events == ["refunded"]


async def test_a_transport_that_says_nothing_is_assumed_to_have_sent() -> None:
    recorder = Recorder()
    entered = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    client = AsyncHookClient(
        hook_id=HOOK,
        secret=SECRET,
        base_url="https://hooks.example.test",
        quota=recorder,
        transport=httpx.MockTransport(hang),
    )
    async with client, anyio.create_task_group() as tg:
        tg.start_soon(client.post_message, "x")
        await entered.wait()
        tg.cancel_scope.cancel()
    assert recorder.events == ["unconfirmed"]
