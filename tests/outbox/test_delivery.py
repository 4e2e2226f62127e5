"""Order, quota and faults: everything put is posted, in order, with no refusal."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import httpx
import pytest

from hookapi import APIConnectionError, AsyncHookClient, Delivery, Outbox, Receipt, ReceiptState
from hookapi.emulator import Emulator, Hook
from hookapi.testing import make_client, scripted_faults

from .conftest import texts

pytestmark = pytest.mark.anyio

HOUR = 3600.0


def ideal_finish(messages: int, per_hour: int) -> float:
    """When the last message can start at the earliest, from a start at 0 (either window)."""
    return (math.ceil(messages / per_hour) - 1) * HOUR


@pytest.mark.parametrize(
    "emulator",
    [{"per_hour": 120, "window": "fixed"}, {"per_hour": 120, "window": "sliding"}],
    indirect=True,
    ids=["fixed", "sliding"],
)
async def test_a_burst_from_20_producers_is_all_delivered_in_put_order(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    receipts: list[Receipt] = []

    async def producer(n: int) -> None:
        for i in range(25):
            receipts.append(await outbox.put(f"producer {n} message {i}"))
            await anyio.lowlevel.checkpoint()  # interleave the producers

    async with Outbox(client, drain_timeout=math.inf) as outbox:
        async with anyio.create_task_group() as producers:
            for n in range(20):
                producers.start_soon(producer, n)
        results = [await receipt.wait() for receipt in receipts]
        finished = anyio.current_time()
    assert len(receipts) == 500
    assert all(receipt.state is ReceiptState.DELIVERED for receipt in receipts)
    in_put_order = [receipt.text for receipt in sorted(receipts, key=lambda r: r.id)]
    assert texts(emulator) == in_put_order
    assert emulator.status_counts == {200: 500}  # not one 429
    assert sum(result.attempts for result in results) == 500
    ideal = ideal_finish(500, 120)
    assert ideal <= finished <= 1.02 * ideal


async def test_concurrent_senders_start_in_put_order(emulator: Emulator, hook: Hook) -> None:
    started: list[str] = []
    inner = emulator.transport()

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            started.append((await request.aread()).decode())
            await anyio.sleep(0.1)
            return await inner.handle_async_request(request)

    client = make_client(emulator, hook, transport=Recording())
    async with Outbox(client, concurrency=4) as outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(40)]
        assert len(outbox.pending) == 40
    assert [r.state for r in receipts] == [ReceiptState.DELIVERED] * 40
    assert started == [f'{{"message":"m{i}"}}' for i in range(40)]
    assert sorted(texts(emulator)) == sorted(f"m{i}" for i in range(40))


@pytest.mark.parametrize("emulator", [{"per_hour": 20}], indirect=True)
async def test_faults_mid_burst_are_ridden_out_in_order(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    async with Outbox(client, drain_timeout=math.inf) as outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(60)]
        await receipts[19].wait()
        # More 503s in a row than the client's RetryPolicy tries: the outbox tries again.
        with scripted_faults(emulator, 500, 503, "drop", *[503] * 6, "drop", 500):
            await receipts[40].wait()
    assert texts(emulator) == [f"m{i}" for i in range(60)]
    assert emulator.faults_injected == {"500": 2, "503": 7, "drop": 2}
    assert all(r.state is ReceiptState.DELIVERED for r in receipts)


async def test_a_message_posted_before_its_connection_dropped_is_sent_again_at_least_once(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    emulator.fail_next("drop", posted=True)
    async with Outbox(client) as outbox:
        first = await outbox.put("first")
        second = await outbox.put("second")
    assert (first.state, second.state) == (ReceiptState.DELIVERED, ReceiptState.DELIVERED)
    assert texts(emulator) == ["first", "first", "second"]  # the one duplicate it allows
    assert outbox.failed() == []


async def test_at_most_once_reports_it_unknown_and_never_resends(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    emulator.fail_next("drop", posted=True)
    async with Outbox(client, delivery="at_most_once") as outbox:
        first = await outbox.put("first")
        second = await outbox.put("second")
    assert (first.state, second.state) == (ReceiptState.UNKNOWN, ReceiptState.DELIVERED)
    assert texts(emulator) == ["first", "second"]
    (dead,) = outbox.failed()
    assert (dead.id, dead.state, dead.text) == (first.id, ReceiptState.UNKNOWN, "first")
    assert "may or may not have been posted" in dead.reason
    with pytest.raises(APIConnectionError) as caught:
        await first.wait()
    assert caught.value.delivery is Delivery.UNKNOWN
