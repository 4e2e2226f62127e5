"""Never run: mypy checks that the public API's types are what the docs promise."""

from __future__ import annotations

from typing import assert_type

import httpx

import hookapi
from hookapi import (
    APIStatusError,
    AsyncHookClient,
    ClientOptions,
    Delivery,
    HookClient,
    PostResult,
    RateLimit,
    RateLimitError,
    RetryPolicy,
)


async def check_client() -> None:
    client = AsyncHookClient(
        hook_id="id",
        secret="s",
        base_url="https://x.test",
        timeout=5.0,
        retry=RetryPolicy(max_attempts=2),
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )
    assert_type(AsyncHookClient.from_url("https://x.test/a/b"), AsyncHookClient)
    assert_type(AsyncHookClient.from_env(), AsyncHookClient)
    async with client as entered:
        assert_type(entered, AsyncHookClient)
        result = await entered.post_message("hi", timeout=1.0, deadline=2.0)
        assert_type(result, PostResult)
        assert_type(result.attempts, int)
        assert_type(result.rate_limit, RateLimit | None)
    assert_type(client.rate_limit, RateLimit | None)
    assert_type(client.retry_policy, RetryPolicy)


def check_errors(exc: hookapi.HookAPIError) -> None:
    assert_type(exc.delivery, Delivery)
    assert_type(exc.attempts, int)
    if isinstance(exc, APIStatusError):
        assert_type(exc.status_code, int)
        assert_type(exc.rate_limit, RateLimit | None)
        assert_type(exc.retry_after, float | None)
        assert_type(exc.error, str | None)
    if isinstance(exc, RateLimitError):
        assert_type(exc.local, bool)


def check_values() -> None:
    limit = RateLimit.from_headers({"X-Rate-Limit-Remaining": "1"})
    assert_type(limit, RateLimit | None)
    if limit is not None:
        assert_type(limit.remaining, int | None)
    assert_type(RetryPolicy.disabled(), RetryPolicy)
    assert_type(RetryPolicy().deadline, float)


def check_typed_options(transport: httpx.AsyncBaseTransport) -> None:
    options: ClientOptions = {"timeout": 5.0, "transport": transport}
    assert_type(AsyncHookClient.from_env(timeout=5, allow_insecure_http=True), AsyncHookClient)
    assert_type(AsyncHookClient.from_url("https://x.test/a/b", **options), AsyncHookClient)
    assert_type(HookClient.from_env(retry=RetryPolicy(), max_connections=2), HookClient)
    assert_type(HookClient.from_url("https://x.test/a/b", user_agent="bot/1"), HookClient)
    assert_type(
        HookClient(hook_id="id", secret="s", base_url="https://x.test", timeout=1.0), HookClient
    )
    # A misspelled option is an error: were it accepted, the unused ignore would fail mypy.
    AsyncHookClient.from_env(timout=5)  # type: ignore[call-arg]
    AsyncHookClient.from_url("https://x.test/a/b", retries=3)  # type: ignore[call-arg]
    HookClient.from_env(timout=5)  # type: ignore[call-arg]
    AsyncHookClient.from_env(timeout="5")  # type: ignore[arg-type]


def check_sync_client(client: HookClient) -> None:
    with client as entered:
        assert_type(entered, HookClient)
        result = entered.post_message("hi", timeout=1.0, deadline=2.0)
        assert_type(result, PostResult)
    assert_type(client.rate_limit, RateLimit | None)
    assert_type(client.is_closed, bool)


async def check_outbox(client: AsyncHookClient) -> None:
    async with hookapi.Outbox(client, store="outbox.sqlite", concurrency=2) as outbox:
        assert_type(outbox, hookapi.Outbox)
        receipt = await outbox.put("hi", ttl=60.0)
        assert_type(receipt, hookapi.Receipt)
        assert_type(receipt.id, int)
        assert_type(receipt.state, hookapi.ReceiptState)
        assert_type(await receipt.wait(), PostResult)
        assert_type(outbox.pending, list[hookapi.Receipt])
        assert_type(outbox.failed(), list[hookapi.DeadLetter])
        assert_type(outbox.pause_error, hookapi.HookAPIError | None)
    assert_type(await outbox.aclose(drain_timeout=1.0), list[hookapi.Receipt])
    store: hookapi.OutboxStore = hookapi.SQLiteStore("outbox.sqlite")
    assert_type(await store.open(), list[hookapi.StoredMessage])
    hookapi.Outbox(client, store=hookapi.MemoryStore(), on_full="drop_oldest")
