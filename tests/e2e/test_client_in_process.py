"""The client against the emulator in process: posts, retries, faults, errors; virtual time."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import pytest

from hookapi import (
    APIConnectionError,
    APITimeoutError,
    AsyncHookClient,
    AuthenticationError,
    Delivery,
    HookAPIError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
)
from hookapi.emulator import IN_PROCESS_BASE_URL, Emulator, Hook
from hookapi.testing import assert_posted, make_client, scripted_faults

from .conftest import everything_said

pytestmark = pytest.mark.anyio

#: Deterministic retries: no jitter, and enough attempts to outlast any scripted burst.
PATIENT = RetryPolicy(max_attempts=40, initial_delay=0.01, max_delay=0.1, jitter=False)


async def test_a_post_reaches_the_desktop(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook
) -> None:
    result = await hook_client.post_message("Deploy finished")
    assert (result.status_code, result.attempts) == (200, 1)
    assert result.rate_limit == RateLimit(per_hour=1000, per_day=10_000, used=1, remaining=999)
    assert hook_client.rate_limit == result.rate_limit
    assert_posted(hook_emulator, hook, ["Deploy finished"])
    assert hook_emulator.messages(hook)[0].desktop == "General"


async def test_from_url_takes_the_hook_url_as_copied(hook_emulator: Emulator, hook: Hook) -> None:
    for url in (hook.url, f"{hook.url}/message"):
        # The in-process base is a .localhost name: no allow_insecure_http needed.
        client = AsyncHookClient.from_url(url, transport=hook_emulator.transport())
        async with client:
            await client.post_message(url[-7:])
    assert len(hook_emulator.messages(hook)) == 2


@pytest.mark.parametrize(("status", "counted"), [(503, 1), (500, 4)])
async def test_retries_through_a_burst_deliver_exactly_once(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook, status: int, counted: int
) -> None:
    with scripted_faults(hook_emulator, status, status, status):
        result = await hook_client.post_message("once")
    assert result.attempts == 4
    assert_posted(hook_emulator, hook, ["once"])
    # A 500 reached the service and used quota; maintenance answers did not.
    assert hook_emulator.quota(hook).used_hour == counted
    assert result.rate_limit is not None
    assert result.rate_limit.used == counted


async def test_bursts_among_concurrent_posts_still_deliver_each_exactly_once(
    hook_emulator: Emulator, hook: Hook
) -> None:
    hook_emulator.fail_next(503, times=15)
    hook_emulator.fail_next(500, times=10)
    hook_emulator.fail_next(503, times=5, headers=False, retry_after=1)
    client = make_client(hook_emulator, hook, retry=PATIENT)
    texts = [f"message {n}" for n in range(40)]

    async def post_all(chunk: list[str]) -> None:
        for text in chunk:
            await client.post_message(text)

    async with client, anyio.create_task_group() as tasks:
        for start in range(0, 40, 4):
            tasks.start_soon(post_all, texts[start : start + 4])
    assert hook_emulator.pending_faults() == []
    assert_posted(hook_emulator, hook, texts, ordered=False)
    assert hook_emulator.faults_injected == {"503": 20, "500": 10}


async def test_a_burst_longer_than_the_policy_raises_the_last_error(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook
) -> None:
    hook_emulator.fail_next(503, times=4)
    with pytest.raises(ServiceUnavailableError) as caught:
        await hook_client.post_message("never")
    error = caught.value
    assert (error.attempts, error.delivery) == (4, Delivery.REJECTED)
    assert error.error == "maintenance"
    assert error.rate_limit is not None
    assert hook.secret not in everything_said([], error)
    assert hook_emulator.messages(hook) == []


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_is_waited_out(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook, status: int
) -> None:
    hook_emulator.fail_next(status, retry_after=5)
    result = await hook_client.post_message("patient")
    assert result.attempts == 2
    assert result.elapsed == pytest.approx(5.0, abs=0.01)
    assert_posted(hook_emulator, hook, ["patient"])


async def test_a_maintenance_page_without_headers_is_ridden_out(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook
) -> None:
    with scripted_faults(hook_emulator, 503, 503, headers=False):
        result = await hook_client.post_message("through the proxy")
    assert result.attempts == 3
    assert result.rate_limit == RateLimit(per_hour=1000, per_day=10_000, used=1, remaining=999)


async def test_a_wrong_secret_is_an_authentication_error(
    hook_emulator: Emulator, hook: Hook
) -> None:
    wrong = "f" * 64
    client = AsyncHookClient(
        hook_id=hook.id,
        secret=wrong,
        base_url=IN_PROCESS_BASE_URL,
        transport=hook_emulator.transport(),
    )
    async with client:
        with pytest.raises(AuthenticationError) as caught:
            await client.post_message("let me in")
    error = caught.value
    assert (error.status_code, error.error, error.attempts) == (401, "access_denied", 1)
    assert error.rate_limit == RateLimit(per_hour=1000, per_day=10_000, used=0, remaining=1000)
    assert wrong not in everything_said([], error, client)


async def test_a_dropped_connection_is_not_retried_by_default(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook
) -> None:
    hook_emulator.fail_next("drop")
    with pytest.raises(APIConnectionError) as caught:
        await hook_client.post_message("lost?")
    assert (caught.value.delivery, caught.value.attempts) == (Delivery.UNKNOWN, 1)
    assert hook_emulator.messages(hook) == []


async def test_retrying_an_unknown_delivery_can_post_twice(
    hook_emulator: Emulator, hook: Hook
) -> None:
    """Why ``retry_unknown_delivery`` is off by default, shown end to end."""
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.1, retry_unknown_delivery=True)
    client = make_client(hook_emulator, hook, retry=policy)
    hook_emulator.fail_next("drop", posted=True)
    async with client:
        result = await client.post_message("twice")
    assert result.attempts == 2
    assert_posted(hook_emulator, hook, ["twice", "twice"])


async def test_a_late_answer_times_out_with_delivery_unknown(
    hook_emulator: Emulator, hook: Hook
) -> None:
    client = make_client(hook_emulator, hook, timeout=10.0)
    hook_emulator.fail_next("delay", delay=30.0)
    started = anyio.current_time()
    async with client:
        with pytest.raises(APITimeoutError) as caught:
            await client.post_message("slow")
    assert anyio.current_time() - started == pytest.approx(10.0, abs=0.01)
    assert caught.value.delivery is Delivery.UNKNOWN
    assert_posted(hook_emulator, hook, ["slow"])  # it was posted; only the answer was late


async def test_random_faults_in_a_soak_run_lose_and_double_nothing() -> None:
    emulator = Emulator(fault_rate=0.2, seed=7)
    hook = emulator.create_hook()
    client = make_client(emulator, hook, retry=PATIENT)
    texts = [f"soak {n}" for n in range(200)]

    async def post_all(chunk: list[str]) -> None:
        for text in chunk:
            await client.post_message(text)

    async with client, anyio.create_task_group() as tasks:
        for start in range(0, 200, 20):
            tasks.start_soon(post_all, texts[start : start + 20])
    assert_posted(emulator, hook, texts, ordered=False)
    injected = emulator.faults_injected
    assert set(injected) == {"500", "503"}
    assert 20 <= sum(injected.values()) <= 80
    assert emulator.status_counts[200] == 200


async def expect_error(call: Callable[[], Awaitable[object]]) -> HookAPIError:
    with pytest.raises(HookAPIError) as caught:
        await call()
    return caught.value


async def test_no_error_log_or_repr_shows_the_secret(
    hook_emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = Emulator(per_hour=1)
    small = emulator.create_hook()
    client = make_client(hook_emulator, hook, timeout=5.0)
    limited = make_client(emulator, small)
    errors = []
    async with client, limited:
        hook_emulator.fail_next(503, times=4, retry_after=0.5)
        errors.append(await expect_error(lambda: client.post_message("a")))
        hook_emulator.fail_next("drop")
        errors.append(await expect_error(lambda: client.post_message("b")))
        hook_emulator.fail_next("delay", delay=60)
        errors.append(await expect_error(lambda: client.post_message("c")))
        hook_emulator.fail_next(400)
        errors.append(await expect_error(lambda: client.post_message("d")))
        await limited.post_message("uses the hour")
        errors.append(await expect_error(lambda: limited.post_message("e", deadline=10)))
    assert [type(error) for error in errors] == [
        ServiceUnavailableError,
        APIConnectionError,
        APITimeoutError,
        type(errors[3]),
        RateLimitError,
    ]
    said = everything_said(caplog.records, *errors, client, limited, hook, small, hook_emulator)
    assert hook.secret not in said
    assert small.secret not in said
    assert "retrying" in said  # the retries were logged, redacted
