"""Refusals: a 400 is a dead letter; a 401, 403, 404 or redirect pauses; both are reported."""

from __future__ import annotations

import logging
import math

import anyio
import pytest
import respx

from hookapi import (
    AsyncHookClient,
    BadRequestError,
    HookAPIError,
    NotFoundError,
    Outbox,
    OutboxClosedError,
    ReceiptState,
)
from hookapi.emulator import Emulator

from ..conftest import ClientFactory
from .conftest import texts

pytestmark = pytest.mark.anyio


async def test_a_400_fails_that_message_and_the_rest_go_on(
    emulator: Emulator, client: AsyncHookClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    async with Outbox(client) as outbox:
        first = await outbox.put("one")
        await first.wait()
        emulator.fail_next(400)
        bad = await outbox.put("two")
        third = await outbox.put("three")
        with pytest.raises(BadRequestError):
            await bad.wait()
        await third.wait()
        (dead,) = outbox.failed()
        assert (dead.id, dead.text, dead.state) == (bad.id, "two", ReceiptState.FAILED)
        assert dead.error is bad.error
        assert "400" in dead.reason
        retried = await outbox.retry(dead)
        await retried.wait()
        assert outbox.failed() == []
    assert bad.state is ReceiptState.FAILED
    assert texts(emulator) == ["one", "three", "two"]
    (record,) = [r for r in caplog.records if "dead letter" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert f"message {bad.id}" in record.getMessage()


async def test_a_dead_letter_can_be_discarded(emulator: Emulator, client: AsyncHookClient) -> None:
    emulator.fail_next(400)
    async with Outbox(client) as outbox:
        receipt = await outbox.put("bad")
        with pytest.raises(BadRequestError):
            await receipt.wait()
        await outbox.discard(receipt.id)
        assert outbox.failed() == []
        with pytest.raises(KeyError):
            await outbox.discard(receipt.id)
        with pytest.raises(KeyError):
            await outbox.retry(receipt.id)
    with pytest.raises(OutboxClosedError):
        await outbox.put("late")


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_hook_that_is_gone_pauses_the_outbox_until_resumed(
    emulator: Emulator, client: AsyncHookClient, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    reported: list[HookAPIError] = []
    emulator.fail_next(status)
    async with Outbox(client, on_pause=reported.append, drain_timeout=math.inf) as outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(5)]
        while not outbox.paused:
            await _tick()
        (error,) = reported
        assert outbox.pause_error is error
        assert getattr(error, "status_code", None) == status
        assert texts(emulator) == []  # nothing burnt against the dead hook
        assert [r.state for r in receipts] == [ReceiptState.QUEUED] * 5
        assert [r.id for r in outbox.pending] == [r.id for r in receipts]
        outbox.resume()
        for receipt in receipts:
            await receipt.wait()
        assert not _paused(outbox)
    assert texts(emulator) == [f"m{i}" for i in range(5)]
    assert any("paused" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_closing_a_paused_outbox_returns_at_once_with_what_was_not_sent(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    emulator.fail_next(404)
    async with Outbox(client, drain_timeout=math.inf) as outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(3)]
        while not outbox.paused:
            await _tick()
        assert isinstance(outbox.pause_error, NotFoundError)
        left = await outbox.aclose()
    assert left == receipts
    for receipt in receipts:
        with pytest.raises(OutboxClosedError):
            await receipt.wait()
    assert texts(emulator) == []


async def _tick() -> None:
    await anyio.sleep(0.01)


def _paused(outbox: Outbox) -> bool:
    return outbox.paused  # read afresh: a type checker keeps an earlier narrowing


@pytest.mark.parametrize("status", [301, 308, 302, 307])
async def test_a_redirect_pauses_the_outbox_instead_of_failing_the_queue(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, status: int
) -> None:
    moved = router.post(message_url).respond(
        status, headers={"Location": "https://hooks.example.test/v2/moved"}
    )
    reported: list[HookAPIError] = []
    async with Outbox(make_client(), on_pause=reported.append) as outbox:
        receipts = [await outbox.put(f"m{i}") for i in range(5)]
        with anyio.move_on_after(60):  # virtual time
            while not outbox.paused:
                await _tick()
        assert outbox.failed() == []  # no dead letter, and no request past the first
        (error,) = reported
        assert getattr(error, "status_code", None) == status
        assert moved.call_count == 1
        assert [r.state for r in receipts] == [ReceiptState.QUEUED] * 5
        router.post(message_url).respond(200, text="ok")  # the hook's URL was fixed
        outbox.resume()
        for receipt in receipts:
            await receipt.wait()
