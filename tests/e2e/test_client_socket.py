"""The client against the emulator over a real loopback socket, on both backends."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from hookapi import APIConnectionError, APITimeoutError, AsyncHookClient, Delivery, RetryPolicy
from hookapi.emulator import Emulator, Hook, Server
from hookapi.testing import assert_posted

from .conftest import everything_said

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

FAST = RetryPolicy(max_attempts=6, initial_delay=0.001, max_delay=0.01)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Real clocks: a virtual clock would jump past timeouts while the kernel moves bytes."""
    return request.param


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(per_hour=500, per_day=5000)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Ops")


@pytest.fixture
async def server(emulator: Emulator) -> AsyncIterator[Server]:
    async with emulator.serve() as server:
        yield server


def client_for(hook: Hook, server: Server, **options: Any) -> AsyncHookClient:
    # Plain http to loopback needs no allow_insecure_http.
    options.setdefault("retry", FAST)
    return AsyncHookClient.from_url(hook.url_for(server.url), **options)


async def test_the_client_posts_over_a_socket(
    emulator: Emulator, hook: Hook, server: Server
) -> None:
    async with client_for(hook, server) as client:
        for text in ("one", "two", "three"):
            result = await client.post_message(text)
    assert result.rate_limit is not None
    assert (result.rate_limit.used, result.rate_limit.remaining) == (3, 497)
    assert_posted(emulator, hook, ["one", "two", "three"])


async def test_retries_through_bursts_over_a_socket_deliver_exactly_once(
    emulator: Emulator, hook: Hook, server: Server
) -> None:
    emulator.fail_next(503, times=2)
    emulator.fail_next(500, times=2)
    emulator.fail_next(503, headers=False)
    async with client_for(hook, server) as client:
        result = await client.post_message("through it all")
    assert result.attempts == 6
    assert_posted(emulator, hook, ["through it all"])


async def test_concurrent_posts_share_the_connection_pool(
    emulator: Emulator, hook: Hook, server: Server
) -> None:
    texts = [f"socket {n}" for n in range(60)]
    emulator.fail_next(503, times=10)

    async def post_all(client: AsyncHookClient, chunk: list[str]) -> None:
        for text in chunk:
            await client.post_message(text)

    client = client_for(hook, server, max_connections=4)
    async with client, anyio.create_task_group() as tasks:
        for start in range(0, 60, 6):
            tasks.start_soon(post_all, client, texts[start : start + 6])
    assert_posted(emulator, hook, texts, ordered=False)


async def test_a_dropped_connection_over_a_socket_leaves_delivery_unknown(
    emulator: Emulator, hook: Hook, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.fail_next("drop")
    async with client_for(hook, server) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.post_message("lost?")
        assert (await client.post_message("after")).status_code == 200
    assert caught.value.delivery is Delivery.UNKNOWN
    assert_posted(emulator, hook, ["after"])
    assert hook.secret not in everything_said(caplog.records, caught.value, client)


async def test_a_late_answer_over_a_socket_times_out(
    emulator: Emulator, hook: Hook, server: Server
) -> None:
    emulator.fail_next("delay", delay=0.5)
    async with client_for(hook, server, timeout=0.05) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.post_message("slow")
    assert caught.value.delivery is Delivery.UNKNOWN
    assert_posted(emulator, hook, ["slow"])
