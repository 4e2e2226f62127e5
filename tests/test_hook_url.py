"""Slips in a hook URL: each is refused or accepted, and the secret shows nowhere either way.

A hook URL holds its secret as a path segment, so a slip in the path (a segment too many,
``message`` misspelt) would move the secret to where the hook id or the base URL is shown:
in reprs, errors, log records, Redis key names and the command line's error line. Every row
is checked in all of them; a refused row's error must also quote no segment of the path.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from hookapi import (
    AsyncHookClient,
    HookAPIError,
    HookClient,
    InsecureURLError,
    InvalidInputError,
)
from hookapi._quota import HookKey
from hookapi._redis._store import hook_keys
from hookapi.cli import main
from hookapi.cli._common import ExitCode

from .conftest import HOOK_ID, rate_headers
from .test_secret_canary import texts_of

HOST = "https://hooks.example.test"
BASE = f"{HOST}/v1"
#: A second secret-shaped value, for rows that hold two.
OTHER = "aa84c7c4e1422ba3e0d6ea719c876be30808b4917e498149674f9f2b3bdb08c7"


@dataclass(frozen=True, slots=True)
class Row:
    """One URL slip: the URL (a template), and the request URL it must give if accepted."""

    name: str
    url: str
    sends_to: str | None = None  # None: refused
    refusal: type[InvalidInputError] = InvalidInputError


ACCEPTED = [
    Row("plain", "{base}/{id}/{secret}", "{base}/{id}/{secret}/message"),
    Row("message", "{base}/{id}/{secret}/message", "{base}/{id}/{secret}/message"),
    Row("message/", "{base}/{id}/{secret}/message/", "{base}/{id}/{secret}/message"),
    Row("trailing slash", "{base}/{id}/{secret}/", "{base}/{id}/{secret}/message"),
    Row("no base path", "{host}/{id}/{secret}/message", "{host}/{id}/{secret}/message"),
    Row("deep base path", "{host}/a/b/c/{id}/{secret}", "{host}/a/b/c/{id}/{secret}/message"),
    Row("uppercase secret", "{base}/{id}/{SECRET}", "{base}/{id}/{SECRET}/message"),
    Row("uppercase host", "HTTPS://HOOKS.EXAMPLE.TEST/v1/{id}/{secret}", None),
    Row("whitespace around", "  {base}/{id}/{secret}/message \n", "{base}/{id}/{secret}/message"),
    Row("short id", "{host}/a/{secret}", "{host}/a/{secret}/message"),
    Row("encoded base path", "{host}/my%20hooks/{id}/{secret}", None),
    Row("loopback http", "http://127.0.0.1:8080/{id}/{secret}", None),
    # Cannot be told from a hook whose id is "v1": the secret still goes where a secret goes.
    Row("secret only, under a base path", "{base}/{secret}", "{host}/v1/{secret}/message"),
]
ACCEPTED = [
    Row(r.name, r.url, r.sends_to or r.url.strip().removesuffix("/") + "/message") for r in ACCEPTED
]
REFUSED = [
    Row("/messages", "{base}/{id}/{secret}/messages"),
    Row("/messages/", "{base}/{id}/{secret}/messages/"),
    Row("/message/send", "{base}/{id}/{secret}/message/send"),
    Row("/message/message", "{base}/{id}/{secret}/message/message"),
    Row("/extra", "{base}/{id}/{secret}/extra"),
    Row("/extra/message", "{base}/{id}/{secret}/extra/message"),
    Row("/x/y", "{base}/{id}/{secret}/x/y"),
    Row("/MESSAGE", "{base}/{id}/{secret}/MESSAGE"),
    Row("/Message", "{base}/{id}/{secret}/Message"),
    Row("%6Dessage", "{base}/{id}/{secret}/%6Dessage"),
    Row("%6dESSAGE", "{base}/{id}/{secret}/%6dESSAGE"),
    Row("/message.json", "{base}/{id}/{secret}/message.json"),
    Row("/message//", "{base}/{id}/{secret}/message//"),
    Row("//message", "{base}/{id}/{secret}//message"),
    Row("double slash between", "{base}/{id}//{secret}"),
    Row("double slash after host", "{host}//v1/{id}/{secret}"),
    Row("secret in the id's place", "{base}/{secret}/{id}"),
    Row("two secrets", "{base}/{other}/{secret}"),
    Row("id without dashes", "{base}/35d7bef23d7e11ecbfa242010a200115/{secret}"),
    Row("secret only", "{host}/{secret}"),
    Row("secret only, with /message", "{host}/{secret}/message"),
    Row("query", "{base}/{id}/{secret}/message?x=1"),
    Row("empty query", "{base}/{id}/{secret}?"),
    Row("query holding the secret", "{base}/{id}/x?secret={secret}"),
    Row("fragment", "{base}/{id}/{secret}#top"),
    Row("empty fragment", "{base}/{id}/{secret}/message#"),
    Row("userinfo", "https://user:pw@hooks.example.test/v1/{id}/{secret}"),
    Row("secret as password", "https://{id}:{secret}@hooks.example.test/v1/a/b"),
    Row("dot-dot segment", "{base}/{id}/{secret}/../message"),
    Row("dot segment", "{base}/{id}/./{secret}"),
    Row("encoded dot-dot", "{base}/{id}/{secret}/%2e%2e/message"),
    Row("percent-encoded secret", "{base}/{id}/%61{secret}"),
    Row("percent-encoded id", "{base}/%33{id}/{secret}"),
    Row("encoded slash", "{base}/{id}/{secret}%2Fmessage"),
    Row("backslash", "{base}/{id}/{secret}\\message"),
    Row("space before /message", "{base}/{id}/{secret} /message"),
    Row("tab in the path", "{base}/{id}/{secret}\t/message"),
    Row("non-ASCII in the secret", "{base}/{id}/{secret}\u00e4"),
    Row("matrix parameter", "{base}/{id}/{secret};v=1"),
    Row("at sign", "{base}/{id}/{secret}@evil.test"),
    Row("quoted", '"{base}/{id}/{secret}"'),
    Row("typographic quotes", "\u201c{base}/{id}/{secret}\u201d"),
    Row("ftp", "ftp://hooks.example.test/v1/{id}/{secret}"),
    Row("no host", "https:///v1/{id}/{secret}"),
    Row("plain http", "http://hooks.example.test/v1/{id}/{secret}", refusal=InsecureURLError),
]


def fill(template: str, secret: str) -> str:
    return template.format(
        base=BASE, host=HOST, id=HOOK_ID, secret=secret, SECRET=secret.upper(), other=OTHER
    )


def assert_hidden(secret: str, texts: list[str]) -> None:
    """The secret, in any case, is in none of ``texts``."""
    for text in texts:
        assert secret.lower() not in text.lower()


def assert_no_segment(url: str, texts: list[str]) -> None:
    """No path segment of ``url`` (but the word ``message`` the errors spell out) is quoted.

    Compared as written (``MESSAGE`` must not be echoed); :func:`assert_hidden` covers the
    secret in any case.
    """
    path = urlsplit(url.strip().strip('"\u201c\u201d')).path
    segments = {s for s in re.split(r"[/\\;@ \t]", path) if len(s) >= 4}
    segments -= {"message"}
    for text in texts:
        for segment in segments:
            assert segment not in text, segment


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in ("hookapi", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() + repr(r.args) + repr(r.__dict__) for r in caplog.records]


@pytest.mark.parametrize("row", REFUSED, ids=[r.name for r in REFUSED])
def test_a_slip_is_refused_without_showing_the_path(
    row: Row, secret: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    url = fill(row.url, secret)
    texts: list[str] = []
    for build in (AsyncHookClient.from_url, HookClient.from_url):
        with pytest.raises(row.refusal) as caught:
            build(url)
        texts += texts_of(caught.value)
    assert_hidden(secret, texts + log_texts(debug_logs))
    assert_no_segment(url, texts)
    assert HOOK_ID not in "".join(texts)


@pytest.mark.parametrize("row", REFUSED, ids=[r.name for r in REFUSED])
def test_from_env_refuses_a_slip_too(
    row: Row, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", fill(row.url, secret))
    with pytest.raises(row.refusal) as caught:
        AsyncHookClient.from_env()
    assert_hidden(secret, texts_of(caught.value))


@pytest.mark.parametrize("row", ACCEPTED, ids=[r.name for r in ACCEPTED])
@pytest.mark.anyio
async def test_an_accepted_url_posts_to_its_own_hook_and_hides_the_secret(
    row: Row, secret: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(401, json={"error": "access_denied"}, headers=rate_headers(9))

    client = AsyncHookClient.from_url(fill(row.url, secret), transport=httpx.MockTransport(answer))
    async with client:
        with pytest.raises(HookAPIError) as caught:
            await client.post_message("hi")
    assert row.sends_to is not None
    assert sent == [httpx.URL(fill(row.sends_to, secret)).__str__()]
    base = client._base_url
    keys = hook_keys("hookapi:", HookKey(base_url=str(base), hook_id=client.hook_id))
    texts = [repr(client), client.url, client.hook_id, str(base), *keys]
    assert_hidden(secret, texts + texts_of(caught.value) + log_texts(debug_logs))


@pytest.mark.parametrize("row", REFUSED + ACCEPTED, ids=[r.name for r in REFUSED + ACCEPTED])
def test_the_send_command_never_shows_the_secret(
    row: Row,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", fill(row.url, secret))
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=rate_headers(9)))
    code = main(["send", "-v", "hi"], transport=transport)
    out, err = capsys.readouterr()
    if row.sends_to is None:
        assert code == ExitCode.INVALID_INPUT
        assert err.startswith("hookapi send: ")
        assert_no_segment(fill(row.url, secret), [err.removeprefix("hookapi send: ")])
    else:
        assert code == ExitCode.OK, err
    assert_hidden(secret, [out, err])
