"""Error messages say what the user did, in the user's terms: one test for each wording."""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import pytest

from hookapi import (
    APIConnectionError,
    AsyncHookClient,
    ClientClosedError,
    Delivery,
    HookClient,
    InvalidInputError,
    RateLimitError,
    RetryPolicy,
)
from hookapi.cli._common import explain
from hookapi.emulator import Emulator
from hookapi.testing import make_client

from .conftest import BASE, HOOK_ID

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("quote", ['"', "'", "\u201c"])
@pytest.mark.parametrize("factory", [AsyncHookClient.from_url, HookClient.from_url])
def test_a_quoted_url_is_called_quoted(
    quote: str, factory: Callable[[str], object], secret: str
) -> None:
    url = f"{quote}{BASE}/{HOOK_ID}/{secret}{quote}"
    with pytest.raises(InvalidInputError) as caught:
        factory(url)
    assert str(caught.value) == (
        "The hook URL is quoted: remove the quotes that came with it when it was pasted."
    )
    assert secret not in str(caught.value)


def test_a_quoted_url_in_the_environment_is_called_quoted(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", f"  '{BASE}/{HOOK_ID}/{secret}'\n")
    with pytest.raises(InvalidInputError, match="The hook URL is quoted"):
        AsyncHookClient.from_env()


async def test_a_lone_surrogate_is_located_in_the_text(secret: str) -> None:
    client = AsyncHookClient(
        hook_id=HOOK_ID,
        secret=secret,
        base_url=BASE,
        transport=httpx.MockTransport(lambda request: httpx.Response(200)),
    )
    with pytest.raises(InvalidInputError) as caught:
        await client.post_message("a\ud800b")
    assert caught.value.message == (
        "The message cannot be encoded as UTF-8: a lone surrogate '\\ud800' at index 1 of the text."
    )
    # A message it concerns: the error says it was not sent.
    assert str(caught.value).endswith("The message was not sent.")


def test_plain_http_keeps_the_port_and_names_the_option(secret: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        AsyncHookClient.from_url(f"http://chat.internal:8080/hooks/{HOOK_ID}/{secret}")
    text = str(caught.value)
    assert "base_url http://chat.internal:8080 is plain http" in text
    assert "allow_insecure_http=True" in text
    assert secret not in text


@pytest.mark.parametrize(
    "build",
    [
        lambda s: AsyncHookClient(hook_id=HOOK_ID, secret=s, base_url=BASE, timeout=0),
        lambda s: AsyncHookClient(hook_id="a/b", secret=s, base_url=BASE),
        lambda s: AsyncHookClient(hook_id=HOOK_ID, secret=s, base_url=BASE, max_connections=0),
        lambda s: AsyncHookClient.from_url(f"https://hooks.example.test/{s}"),
        lambda s: AsyncHookClient.from_url(f"{BASE}/{HOOK_ID}/{s}", user_agent="caf\u00e9"),
        lambda s: HookClient(hook_id=HOOK_ID, secret=s, base_url=BASE, timeout=-1),
        lambda s: RetryPolicy(max_attempts=0),
        lambda s: RetryPolicy(deadline=0),
    ],
    ids=[
        "timeout",
        "hook_id",
        "max_connections",
        "url",
        "user_agent",
        "sync-timeout",
        "retry-attempts",
        "retry-deadline",
    ],
)
def test_a_construction_error_never_mentions_a_message(build: object, secret: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build(secret)  # type: ignore[operator]
    assert "was not sent" not in str(caught.value)
    assert "posted" not in str(caught.value)
    assert str(caught.value) == caught.value.message


def test_from_env_without_the_variable_mentions_no_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    with pytest.raises(InvalidInputError) as caught:
        AsyncHookClient.from_env()
    assert str(caught.value) == "The environment variable HOOKAPI_URL is not set."


async def test_reopening_a_closed_client_mentions_no_message(secret: str) -> None:
    client = AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=BASE)
    await client.aclose()
    with pytest.raises(ClientClosedError) as caught:
        async with client:
            pass
    assert str(caught.value) == "This AsyncHookClient is closed and cannot be reopened."


async def connect_error_text(secret: str, text: str) -> str:
    """What a post says when the transport fails to connect with ``ConnectError(text)``."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(text, request=request)

    client = AsyncHookClient(
        hook_id=HOOK_ID,
        secret=secret,
        base_url=BASE,
        retry=RetryPolicy.disabled(),
        transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(APIConnectionError) as caught:
        await client.post_message("hi")
    return str(caught.value)


async def test_a_transport_error_ends_in_one_full_stop(secret: str) -> None:
    text = await connect_error_text(secret, "All connection attempts failed.")
    # Nothing was sent, so no attempt is counted; the transport's own full stop is not doubled.
    assert text.endswith("ConnectError: All connection attempts failed. The message was not sent.")
    assert ".." not in text


async def test_a_transport_error_without_text_names_its_type(secret: str) -> None:
    text = await connect_error_text(secret, "")
    assert "failed before it was sent: ConnectError: ConnectError. The message" in text


def test_an_emulator_hook_url_needs_no_quotes_stripped() -> None:
    # The check looks at the ends only: a URL holding no quote at either end builds.
    emulator = Emulator()
    client = AsyncHookClient.from_url(emulator.create_hook().url, transport=emulator.transport())
    assert client.hook_id


async def test_a_local_refusal_says_up_to_once_and_not_sent_once() -> None:
    emulator = Emulator(per_hour=2, per_day=100)
    hook = emulator.create_hook("Ops")
    async with make_client(emulator, hook) as client:
        for text in ("one", "two"):
            await client.post_message(text)
        with pytest.raises(RateLimitError) as caught:
            await client.post_message("three", deadline=5)
    error = caught.value
    assert error.local
    assert error.retry_after is not None
    text = str(error)
    # The client's count is an upper bound: the service names no reset time.
    assert f"used up for up to {math.ceil(error.retry_after)} s more by the client's count" in text
    assert "at least" not in text
    assert text.count("not sent") == 1
    assert text.endswith("past this call's deadline. The message was not sent.")


def test_the_command_line_names_its_option_in_a_local_refusal() -> None:
    error = RateLimitError(
        "POST u was held back by the client: the hook's quota is used up for up to 3601 s more "
        "by the client's count (the service does not say when its window restarts), past this "
        "call's deadline.",
        url="u",
        status_code=429,
        retry_after=3600.5,
        delivery=Delivery.NOT_SENT,
    )
    error.local = True
    text = explain(error)
    assert "past --deadline." in text
    assert text.endswith("The message was not sent. Pass --deadline inf to wait for the quota.")
    error.local = False
    assert explain(error) == str(error)
