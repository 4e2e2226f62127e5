"""Bad input is refused with a clear, typed error before any request is made."""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import httpx
import pytest
import respx

from hookapi import AsyncHookClient, InvalidInputError, RetryPolicy, Secret
from hookapi._validate import encode_message

from .conftest import BASE, HOOK_ID, ClientFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n\t ", None, 42, b"bytes", ["list"], "lone \ud800 surrogate"],
    ids=["empty", "spaces", "whitespace", "none", "int", "bytes", "list", "surrogate"],
)
async def test_bad_messages_are_refused_before_sending(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, text: Any
) -> None:
    route = router.post(message_url).respond(200)
    async with make_client() as client:
        with pytest.raises(InvalidInputError, match="message") as caught:
            await client.post_message(text)
    assert not route.called
    assert caught.value.attempts == 0
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", 0),
        ("timeout", -1.0),
        ("timeout", math.nan),
        ("timeout", "10"),
        ("deadline", 0),
        ("deadline", True),
    ],
)
async def test_bad_per_call_options_are_refused(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, option: str, value: Any
) -> None:
    route = router.post(message_url).respond(200)
    async with make_client() as client:
        with pytest.raises(InvalidInputError, match=option):
            await client.post_message("hi", **{option: value})
    assert not route.called


@pytest.mark.parametrize(
    "hook_id",
    ["", "a/b", "..", "a?b", "a#b", "a%2Fb", "a b", "a\nb", "ü", 7],
)
def test_bad_hook_ids(hook_id: Any, secret: str) -> None:
    with pytest.raises(InvalidInputError, match="hook_id"):
        AsyncHookClient(hook_id=hook_id, secret=secret, base_url=BASE)


@pytest.mark.parametrize(
    "shape",
    ["{s}", "{S}", "x{s}", "{s}/message", "35d7bef23d7e11ecbfa242010a200115", "%61{s}"],
    ids=["secret", "upper", "prefixed", "with-path", "uuid-without-dashes", "encoded"],
)
def test_a_hook_id_shaped_like_a_secret_is_refused_unshown(shape: str, secret: str) -> None:
    hook_id = shape.format(s=secret, S=secret.upper())
    with pytest.raises(InvalidInputError, match="shape of a secret") as caught:
        AsyncHookClient(hook_id=hook_id, secret=secret, base_url=BASE)
    assert hook_id.lower() not in str(caught.value).lower()
    assert secret not in str(caught.value).lower()


def test_a_hook_id_with_dashes_or_a_short_hex_run_is_accepted(secret: str) -> None:
    for hook_id in (HOOK_ID, "a" * 31, "bot-1"):
        assert AsyncHookClient(hook_id=hook_id, secret=secret, base_url=BASE).hook_id == hook_id


def test_a_base_url_holding_a_secret_shaped_segment_is_refused_unshown(secret: str) -> None:
    with pytest.raises(InvalidInputError, match="shape of a secret") as caught:
        AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=f"{BASE}/{HOOK_ID}/{secret}")
    assert secret not in str(caught.value)
    assert HOOK_ID not in str(caught.value)


@pytest.mark.parametrize(
    "bad", ["", "a/b", "../x", "s?x", "s#x", "s%20", "s x", "s\t", None], ids=repr
)
def test_bad_secrets_never_echo_the_value(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="secret") as caught:
        AsyncHookClient(hook_id=HOOK_ID, secret=bad, base_url=BASE)
    if isinstance(bad, str) and bad:
        assert bad not in str(caught.value)


@pytest.mark.parametrize(
    ("base_url", "match"),
    [
        ("ftp://example.test", "http"),
        ("example.test/hooks", "http"),
        ("https://", "http"),
        ("https://user:pw@example.test", "password"),
        ("https://example.test/x?y=1", "query"),
        ("https://example.test/x#frag", "fragment"),
        ("http://example.test", "clear"),
        ("http://10.0.0.8", "clear"),
        ("http://[::1", "valid URL"),
        (12, "valid URL"),
    ],
)
def test_bad_base_urls(base_url: Any, match: str, secret: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=base_url)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9", "http://x.localhost"],
)
def test_plain_http_to_loopback_is_allowed(base_url: str, secret: str) -> None:
    client = AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=base_url)
    assert client.url.startswith("http://")


def test_plain_http_elsewhere_needs_explicit_consent(secret: str) -> None:
    client = AsyncHookClient(
        hook_id=HOOK_ID, secret=secret, base_url="http://chat.internal", allow_insecure_http=True
    )
    assert client.url == f"http://chat.internal/{HOOK_ID}/***/message"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"timeout": 0}, "timeout"),
        ({"retry": "yes"}, "retry"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2.5}, "max_connections"),
        ({"transport": object()}, "transport"),
        ({"user_agent": "bot\r\nX-Injected: 1"}, "user_agent"),
        ({"user_agent": "bötli"}, "user_agent"),
    ],
)
def test_bad_client_options(options: dict[str, Any], match: str, secret: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=BASE, **options)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.test",
        "https://example.test/only-one",
        "https://example.test/message",
        "https://example.test/a/b?c=d",
        "https://example.test/a/b#c",
        "https://[::1/a/b",
        "ftp://example.test/a/b",
    ],
)
def test_from_url_rejects_other_shapes_without_echoing(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        AsyncHookClient.from_url(url)
    assert "/a/b" not in str(caught.value)


def test_from_url_needs_a_string() -> None:
    with pytest.raises(InvalidInputError, match="str"):
        AsyncHookClient.from_url(httpx.URL("https://x.test/a/b"))  # type: ignore[arg-type]


def test_from_env_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    with pytest.raises(InvalidInputError, match="HOOKAPI_URL"):
        AsyncHookClient.from_env()
    monkeypatch.setenv("MY_HOOK", "   ")
    with pytest.raises(InvalidInputError, match="MY_HOOK"):
        AsyncHookClient.from_env(env_var="MY_HOOK")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": "60"}, "deadline"),
        ({"max_retry_after": -0.1}, "max_retry_after"),
        ({"retry_statuses": {503}}, "retry_statuses"),
        ({"retry_statuses": frozenset({200})}, "retry_statuses"),
    ],
)
def test_bad_retry_policies(options: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        RetryPolicy(**options)


def test_secret_object_is_accepted_and_hidden(secret: str) -> None:
    wrapped = Secret(secret)
    client = AsyncHookClient(hook_id=HOOK_ID, secret=wrapped, base_url=BASE)
    assert secret not in repr(client)
    assert repr(wrapped) == "Secret('***')"
    assert f"{wrapped}" == str(wrapped) == "***"
    assert wrapped == Secret(secret)
    assert wrapped != Secret("other")
    assert wrapped != secret
    assert hash(wrapped) == hash(Secret(secret))
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(wrapped)


@pytest.mark.parametrize(
    "text",
    [
        "Deploy finished",
        'quotes " and \\ backslashes',
        "control \x00\x01\x1f\x7f and \t\n\r",
        "unicode: héllo, 漢字, emoji \U0001f680, \u2028\u2029 separators",
        "</script> & <b>",
    ],
)
def test_the_body_is_what_json_dumps_gives(text: str) -> None:
    # The body is built with json's string encoder alone; it must be byte for byte what
    # json.dumps gives for {"message": text} (no ASCII escaping, no spaces).
    expected = json.dumps({"message": text}, ensure_ascii=False, separators=(",", ":"))
    assert encode_message(text) == expected.encode("utf-8")
    assert json.loads(encode_message(text)) == {"message": text}
