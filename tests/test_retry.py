"""Retries: what is retried, how long it waits, and that every call ends within its deadline."""

from __future__ import annotations

import logging
import math
import time
from email.utils import formatdate

import anyio
import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from hookapi import (
    APIConnectionError,
    APITimeoutError,
    AsyncHookClient,
    Delivery,
    HookAPIError,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
)

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


def ok() -> httpx.Response:
    return httpx.Response(200, text="ok")


async def test_503_503_200_succeeds_on_the_third_attempt(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).mock(
        side_effect=[httpx.Response(503), httpx.Response(503), ok()]
    )
    async with make_client() as client:
        started = anyio.current_time()
        result = await client.post_message("hi")
    assert route.call_count == 3
    assert result.attempts == 3
    # jitter off: waits are the full ceilings 1 s and 2 s
    assert anyio.current_time() - started == pytest.approx(3.0)


async def test_exhausted_retries_raise_the_last_error_not_retryerror(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(500),
        ]
    )
    async with make_client() as client:
        with pytest.raises(InternalServerError) as caught:
            await client.post_message("hi")
    assert route.call_count == 4
    assert caught.value.attempts == 4
    assert "(4 attempts)" in str(caught.value)
    assert caught.value.delivery is Delivery.REJECTED


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 418])
async def test_client_errors_are_not_retried(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, status: int
) -> None:
    route = router.post(message_url).respond(status)
    async with make_client() as client:
        with pytest.raises(Exception, match=str(status)):
            await client.post_message("hi")
    assert route.call_count == 1


async def test_retry_after_seconds_is_honoured(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    router.post(message_url).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "12"}), ok()]
    )
    async with make_client() as client:
        started = anyio.current_time()
        result = await client.post_message("hi")
    assert result.attempts == 2
    assert anyio.current_time() - started == pytest.approx(12.0)


async def test_retry_after_http_date_is_honoured(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    when = formatdate(time.time() + 30, usegmt=True)
    router.post(message_url).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": when}), ok()]
    )
    async with make_client() as client:
        started = anyio.current_time()
        await client.post_message("hi")
    assert 27.0 <= anyio.current_time() - started <= 31.0


async def test_retry_after_over_the_cap_is_not_waited_for(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(503, headers={"Retry-After": "3600"})
    async with make_client(retry=RetryPolicy(max_retry_after=60.0)) as client:
        started = anyio.current_time()
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.post_message("hi")
    assert route.call_count == 1
    assert caught.value.retry_after == 3600.0
    assert anyio.current_time() == started


async def test_stops_before_a_wait_that_would_cross_the_deadline(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(503)
    policy = RetryPolicy(
        max_attempts=10, initial_delay=4.0, max_delay=100.0, deadline=10.0, jitter=False
    )
    async with make_client(retry=policy) as client:
        started = anyio.current_time()
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.post_message("hi")
    # waits 4 then would wait 8 (4 + 8 > 10): two attempts, 4 s
    assert route.call_count == 2
    assert caught.value.attempts == 2
    assert anyio.current_time() - started == pytest.approx(4.0)


async def test_the_deadline_covers_a_hanging_attempt(make_client: ClientFactory) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async with make_client(transport=httpx.MockTransport(hang)) as client:
        started = anyio.current_time()
        with pytest.raises(APITimeoutError) as caught:
            await client.post_message("hi", deadline=5.0)
    assert anyio.current_time() - started == pytest.approx(5.0)
    assert caught.value.delivery is Delivery.UNKNOWN
    assert caught.value.attempts == 1
    assert "5 s deadline" in str(caught.value)


async def test_each_attempt_gets_the_smaller_of_timeout_and_deadline_left(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).mock(side_effect=[httpx.Response(503), ok()])
    async with make_client(timeout=3.0) as client:
        await client.post_message("hi", deadline=3.5)
    first, second = (call.request.extensions["timeout"] for call in route.calls)
    assert first == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}
    assert second["read"] == pytest.approx(2.5)


async def test_connect_failures_are_retried(make_client: ClientFactory) -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise httpx.ConnectError("refused")
        return ok()

    async with make_client(transport=httpx.MockTransport(flaky)) as client:
        result = await client.post_message("hi")
    assert calls == 3
    assert result.attempts == 1  # the two that could not connect never left


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("late"), httpx.RemoteProtocolError("dropped")])
async def test_maybe_delivered_is_not_retried_by_default(
    make_client: ClientFactory, exc: Exception
) -> None:
    calls = 0

    def fail(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise exc

    async with make_client(transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.post_message("hi")
    assert calls == 1
    assert caught.value.delivery is Delivery.UNKNOWN
    assert "may or may not have been posted" in str(caught.value)


async def test_maybe_delivered_is_retried_when_the_policy_opts_in(
    make_client: ClientFactory,
) -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("late")
        return ok()

    policy = RetryPolicy(retry_unknown_delivery=True, initial_delay=0.1)
    async with make_client(transport=httpx.MockTransport(flaky), retry=policy) as client:
        result = await client.post_message("hi")
    assert result.attempts == 2


async def test_gateway_errors_count_as_maybe_delivered(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(504)
    policy = RetryPolicy(retry_statuses=frozenset({500, 503, 504}))
    async with make_client(retry=policy) as client:
        with pytest.raises(ServerError) as caught:
            await client.post_message("hi")
    assert route.call_count == 1
    assert caught.value.delivery is Delivery.UNKNOWN


async def test_disabled_policy_makes_one_attempt(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(503)
    async with make_client(retry=RetryPolicy.disabled()) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.post_message("hi")
    assert route.call_count == 1
    assert caught.value.attempts == 1


async def test_cancellation_during_backoff_is_not_swallowed(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(503)
    async with make_client() as client:
        with anyio.move_on_after(1.5) as scope:
            await client.post_message("hi")
        assert scope.cancelled_caught
    assert route.call_count == 2  # at 0 s and after the 1 s backoff; cancelled in the 2 s one


async def test_cancellation_mid_request_propagates(make_client: ClientFactory) -> None:
    calls = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async with make_client(transport=httpx.MockTransport(hang)) as client:
        with anyio.move_on_after(1.0) as scope:
            await client.post_message("hi")
        assert scope.cancelled_caught
        assert client._transport.gate().quota.in_flight == 0  # type: ignore[attr-defined]
    assert calls == 1


async def test_each_retry_is_logged_with_attempt_delay_and_reason(
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router.post(message_url).mock(side_effect=[httpx.Response(503), httpx.Response(500), ok()])
    caplog.set_level(logging.DEBUG, logger="hookapi")
    async with make_client() as client:
        await client.post_message("hi")
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries == [
        f"hookapi: POST {client.url}: attempt 1 of 4 failed (status 503); retrying in 1.000 s",
        f"hookapi: POST {client.url}: attempt 2 of 4 failed (status 500); retrying in 2.000 s",
    ]
    records = [r for r in caplog.records if getattr(r, "hookapi_event", None) == "retry"]
    facts = [(vars(r)["hookapi_attempt"], vars(r)["hookapi_delay"]) for r in records]
    assert facts == [(1, 1.0), (2, 2.0)]
    assert logging.getLogger("hookapi").handlers == []


async def test_local_quota_refusal_is_not_retried(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(
        200, headers={"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Total-Per-Hour": "1"}
    )
    async with make_client() as client:
        await client.post_message("uses the last one")
        with pytest.raises(RateLimitError) as caught:
            await client.post_message("over", deadline=30)
    assert caught.value.local
    assert caught.value.attempts == 0  # it sent nothing
    assert route.call_count == 1


@given(
    attempt=st.integers(min_value=1, max_value=200),
    initial=st.floats(min_value=0, max_value=100),
    maximum=st.floats(min_value=0, max_value=1000),
)
def test_full_jitter_stays_within_its_ceiling(attempt: int, initial: float, maximum: float) -> None:
    policy = RetryPolicy(initial_delay=initial, max_delay=maximum)
    ceiling = min(maximum, initial * 2 ** min(attempt - 1, 64))
    assert 0.0 <= policy.backoff(attempt) <= ceiling
    assert (
        RetryPolicy(initial_delay=initial, max_delay=maximum, jitter=False).backoff(attempt)
        == ceiling
    )


def test_should_retry_ignores_foreign_exceptions() -> None:
    policy = RetryPolicy()
    assert not policy.should_retry(KeyboardInterrupt())
    assert not policy.should_retry(ValueError("bug"))


async def test_an_infinite_deadline_waits_out_a_retry_after_over_the_cap(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    # A restarted process on an exhausted hook: the service asks for 10 minutes.
    route = router.post(message_url).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "600"}), ok()]
    )
    async with make_client(retry=RetryPolicy(max_retry_after=60.0, jitter=False)) as client:
        started = anyio.current_time()
        result = await client.post_message("hi", deadline=math.inf)
    assert route.call_count == 2
    assert result.attempts == 2
    assert anyio.current_time() - started >= 600.0


async def test_a_retry_after_ending_exactly_at_the_deadline_is_a_rate_limit_error(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    # Every caller's deadline ends exactly when the service's Retry-After does: each one
    # gets the service's refusal (or the client's own), never a timeout.
    router.post(message_url).respond(429, headers={"Retry-After": "10"})
    errors: list[BaseException] = []

    async def post(client: AsyncHookClient) -> None:
        try:
            await client.post_message("hi", deadline=10.0)
        except HookAPIError as exc:
            errors.append(exc)

    async with make_client() as client, anyio.create_task_group() as tasks:
        for _ in range(50):
            tasks.start_soon(post, client)
    assert len(errors) == 50
    assert {type(e) for e in errors} == {RateLimitError}
