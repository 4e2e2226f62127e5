"""Redaction that a server cannot dodge by echoing the secret changed.

A server or proxy that writes the request path back may upper-case it, percent-encode it,
JSON-escape it or HTML-escape it. Each spelling must be redacted wherever server text lands:
an error's message, its body and JSON fields, the ``Location`` and ``WWW-Authenticate``
headers it keeps, the cause it chains, and the log records about it. Each check decodes
what it searches (repeatedly, every way a spelling could hide) before looking for the secret.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from urllib.parse import quote, unquote

import httpx
import pytest

from hookapi import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    HookAPIError,
    Outbox,
    RetryPolicy,
    Secret,
)
from hookapi._secrets import PLACEHOLDER, redact, shows

from .conftest import BASE, HOOK_ID, ClientFactory, rate_headers
from .test_secret_canary import texts_of

pytestmark = pytest.mark.anyio

_ESCAPE = re.compile(r"\\+(?:u00|x)([0-9a-fA-F]{2})")


def decoded(text: str) -> str:
    """``text`` with every escape a spelling could use undone, until nothing changes; lower."""
    while True:
        plain = html.unescape(unquote(_ESCAPE.sub(lambda m: chr(int(m[1], 16)), text)))
        if plain == text:
            return text.lower()
        text = plain


def assert_hidden(secret: str, texts: list[str]) -> None:
    for text in texts:
        assert secret.lower() not in decoded(text)


def percent(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


def json_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def mixed(text: str) -> str:
    forms: list[Callable[[str], str]] = [
        str.upper,
        lambda c: f"%{ord(c):02x}",
        lambda c: f"&#{ord(c)};",
        lambda c: f"\\u{ord(c):04X}",
        lambda c: f"&#X{ord(c):x}",
        lambda c: f"%25{ord(c):02X}",
    ]
    return "".join(forms[i % len(forms)](c) for i, c in enumerate(text))


SPELLINGS: dict[str, Callable[[str], str]] = {
    "as sent": str,
    "upper-cased": str.upper,
    "case swapped": str.swapcase,
    "percent-encoded": percent,
    "percent-encoded, lower hex": lambda s: percent(s).lower(),
    "half percent-encoded": lambda s: "".join(
        f"%{ord(c):02X}" if i % 2 else c for i, c in enumerate(s)
    ),
    "percent-encoded twice": lambda s: quote(percent(s)),
    "JSON \\u escapes": json_escaped,
    "JSON escapes escaped again": lambda s: json_escaped(s).replace("\\", "\\\\"),
    "\\x escapes": lambda s: "".join(f"\\x{ord(c):02x}" for c in s),
    "HTML decimal": lambda s: "".join(f"&#{ord(c)};" for c in s),
    "HTML hex": lambda s: "".join(f"&#x{ord(c):X};" for c in s),
    "HTML without semicolons": lambda s: "".join(f"&#{ord(c):03d}" for c in s),
    "every way at once": mixed,
}


@pytest.mark.parametrize("spell", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_every_spelling_of_the_secret_is_redacted(spell: Callable[[str], str], secret: str) -> None:
    text = f"no hook at /v1/{HOOK_ID}/{spell(secret)}/message, try again"
    redacted = redact(text, Secret(secret))
    assert redacted == f"no hook at /v1/{HOOK_ID}/{PLACEHOLDER}/message, try again"
    assert shows(text, Secret(secret))
    assert not shows(redacted, Secret(secret))
    assert_hidden(secret, [redacted])


def test_another_secret_and_a_part_of_this_one_are_left_alone(secret: str) -> None:
    other = "aa84c7c4e1422ba3e0d6ea719c876be30808b4917e498149674f9f2b3bdb08c7"
    text = f"{other} and {secret[:-1]}"
    assert redact(text, Secret(secret)) == text


def json_path_echo(secret: str) -> str:
    """A JSON error body as a PHP or Java server writes it: ``\\/`` and ``\\uXXXX`` escapes."""
    path = f"https:\\/\\/hooks.example.test\\/v1\\/{HOOK_ID}\\/{json_escaped(secret)}\\/message"
    return (
        '{"error":"access_denied","error_description":"no hook at ' + path + '",'
        '"message":"' + secret.upper() + '"}'
    )


ANSWERS: dict[str, Callable[[str], httpx.Response]] = {
    "401 upper-cased echo": lambda s: httpx.Response(
        401, text=f"no hook /v1/{HOOK_ID}/{s.upper()}/MESSAGE"
    ),
    "404 percent-encoded echo": lambda s: httpx.Response(
        404, text=f"not found: /v1/{HOOK_ID}/{percent(s)}/message"
    ),
    "401 JSON-escaped echo": lambda s: httpx.Response(
        401, content=json_path_echo(s).encode(), headers={"Content-Type": "application/json"}
    ),
    "500 HTML-escaped echo": lambda s: httpx.Response(
        500,
        text="<p>" + "".join(f"&#{ord(c)};" for c in s) + "</p>",
        headers={"Content-Type": "text/html"},
    ),
    "301 Location": lambda s: httpx.Response(
        301, headers={"Location": f"{BASE}/{HOOK_ID}/{s}/message/"}
    ),
    "308 Location upper-cased": lambda s: httpx.Response(
        308, headers={"Location": f"{BASE.upper()}/{HOOK_ID}/{s.upper()}/MESSAGE"}
    ),
    "401 WWW-Authenticate": lambda s: httpx.Response(
        401,
        headers={"WWW-Authenticate": f'Bearer realm="/v1/{HOOK_ID}/{percent(s)}/message"'},
        json={"error": "access_denied"},
    ),
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
async def test_an_error_answer_never_shows_the_secret(
    answer: Callable[[str], httpx.Response],
    secret: str,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(lambda request: answer(secret))
    async with make_client(transport=transport, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.post_message("hi")
    error = caught.value
    kept = [error.body, error.location or "", error.www_authenticate or ""]
    fields = [error.error or "", error.error_description or "", error.error_message or ""]
    logs = [r.getMessage() + repr(r.args) for r in caplog.records]
    assert_hidden(secret, texts_of(error) + kept + fields + logs)
    assert PLACEHOLDER in str(error) + "".join(kept + fields)


async def test_a_redirect_says_where_it_pointed_without_the_secret(
    secret: str, make_client: ClientFactory
) -> None:
    transport = httpx.MockTransport(lambda request: ANSWERS["301 Location"](secret))
    async with make_client(transport=transport, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.post_message("hi")
    moved = f"{BASE}/{HOOK_ID}/{PLACEHOLDER}/message/"
    assert caught.value.location == moved
    assert f"answered 301 Moved Permanently (redirected to {moved}, which is not followed)" in (
        str(caught.value)
    )


async def test_www_authenticate_is_kept_redacted(secret: str, make_client: ClientFactory) -> None:
    transport = httpx.MockTransport(lambda request: ANSWERS["401 WWW-Authenticate"](secret))
    async with make_client(transport=transport, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.post_message("hi")
    assert caught.value.www_authenticate == f'Bearer realm="/v1/{HOOK_ID}/{PLACEHOLDER}/message"'
    assert caught.value.location is None


async def test_a_transport_error_echoing_the_secret_changed_is_redacted_in_its_chained_copy(
    secret: str, make_client: ClientFactory
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"peer said: POST /v1/{HOOK_ID}/{secret.upper()}/message HTTP/1.1")

    transport = httpx.MockTransport(fail)
    async with make_client(transport=transport, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.post_message("hi")
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.ReadError)  # a redacted copy, with no frames to reach
    assert cause.__traceback__ is None
    assert str(cause) == f"peer said: POST /v1/{HOOK_ID}/{PLACEHOLDER}/message HTTP/1.1"
    assert f"/v1/{HOOK_ID}/{PLACEHOLDER}/message" in str(caught.value)
    assert_hidden(secret, texts_of(caught.value))


async def test_log_records_of_an_echoing_answer_hold_no_spelling_of_the_secret(
    secret: str, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = iter(
        [
            httpx.Response(503, text=f"busy: {percent(secret)}", headers={"Retry-After": "1"}),
            httpx.Response(400, text=f"bad: {secret.upper()} {json_escaped(secret)}"),
        ]
    )
    transport = httpx.MockTransport(lambda request: next(answers))
    async with make_client(transport=transport) as client, Outbox(client) as outbox:
        receipt = await outbox.put("refused")
        with pytest.raises(BadRequestError):
            await receipt.wait()
    records = caplog.records
    assert any("retrying" in r.getMessage() for r in records)  # the retry record was searched
    assert any("dead letter" in r.getMessage() for r in records)  # and the dead letter's
    texts = [r.getMessage() + repr(r.args) + repr(r.__dict__) for r in records]
    assert_hidden(secret, texts)
    assert any(PLACEHOLDER in text and "bad" in text for text in texts)


async def test_a_rate_limit_answer_keeps_its_location_redacted(
    secret: str, make_client: ClientFactory
) -> None:
    """Not only redirects: whatever status carries a ``Location`` keeps it redacted."""
    response = httpx.Response(
        429,
        text=f"slow down {secret.swapcase()}",
        headers={**rate_headers(0), "Location": f"/{percent(secret)}"},
    )
    transport = httpx.MockTransport(lambda request: response)
    async with make_client(transport=transport, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(HookAPIError) as caught:
            await client.post_message("hi")
    assert isinstance(caught.value, APIStatusError)
    assert caught.value.location == f"/{PLACEHOLDER}"
    assert_hidden(secret, texts_of(caught.value))
