"""The canary: a random secret posted through every path must never surface anywhere.

Each path runs with the root logger at DEBUG (so httpx's, httpcore's and tenacity's records
are captured too); then every record, error text, repr, chained cause and formatted traceback
is searched for the secret.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import pytest
import respx
from anyio.abc import SocketStream

from hookapi import (
    APIConnectionError,
    AsyncHookClient,
    AuthenticationError,
    HookAPIError,
    InternalServerError,
    InvalidInputError,
    MemoryQuota,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
    Secret,
    ServiceUnavailableError,
)

from .conftest import HOOK_ID, ClientFactory, rate_headers

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3, jitter=False)


def texts_of(exc: BaseException) -> list[str]:
    """Every text an exception can show: str, repr, args, attributes, causes, traceback."""
    seen: list[str] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None:
            continue
        seen += [str(current), repr(current), repr(current.args), repr(vars(current))]
        todo += [current.__cause__, current.__context__]
    seen.append("".join(traceback.format_exception(exc)))
    return seen


class Canary:
    """Collects everything that could leak, and checks it at the end."""

    def __init__(self, secret: str, caplog: pytest.LogCaptureFixture) -> None:
        self.secret = secret
        self.caplog = caplog
        self.texts: list[str] = []
        self.paths: list[str] = []

    def saw(self, *objects: object) -> None:
        for obj in objects:
            if isinstance(obj, BaseException):
                self.texts += texts_of(obj)
            else:
                self.texts += [repr(obj), str(obj)]

    async def expect_error(self, path: str, call: Callable[[], Any]) -> HookAPIError:
        self.paths.append(path)
        try:
            await call()
        except HookAPIError as exc:
            self.saw(exc)
            return exc
        raise AssertionError(f"{path}: no error raised")

    def check(self, *, loggers: set[str]) -> None:
        records = self.caplog.records
        seen = {r.name.split(".")[0] for r in records}
        assert loggers <= seen, seen  # the capture really saw them, so the search means something
        secret = self.secret.lower()
        for record in records:
            text = record.getMessage() + repr(record.args) + repr(record.__dict__)
            assert secret not in unquote(text).lower(), f"secret in a log record of {record.name}"
        for text in self.texts:
            assert secret not in unquote(text).lower(), "secret in an error, repr or traceback"


@pytest.fixture
def canary(secret: str, caplog: pytest.LogCaptureFixture) -> Canary:
    caplog.set_level(logging.DEBUG)
    return Canary(secret, caplog)


def echo(path: bytes) -> bytes:
    """The request path written back as servers do: as is, upper-cased, percent-encoded."""
    encoded = "".join(f"%{byte:02X}" for byte in path).encode()
    return b" ".join([path, path.upper(), encoded])


@asynccontextmanager
async def loopback_server(statuses: list[int]) -> AsyncIterator[str]:
    """A minimal HTTP/1.1 server on 127.0.0.1 that answers with ``statuses`` in turn."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    answers = iter(statuses)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            while len(body) < length:
                body += await stream.receive()
            status = next(answers)
            text = (
                b"ok"
                if status == 200
                else b'{"error": "nope", "message": "path ' + echo(head.split(b" ")[1]) + b'"}'
            )
            extra = "".join(f"{k}: {v}\r\n" for k, v in rate_headers(9).items())
            await stream.send(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(text)}\r\n{extra}"
                f"Connection: close\r\n\r\n".encode()
                + text
            )

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}/hooks"
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_secret_never_leaks_over_a_real_socket(
    canary: Canary, secret: str, anyio_backend: str
) -> None:
    async with (
        loopback_server([200, 503, 503, 503, 401]) as base,
        AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=base, retry=FAST) as client,
    ):
        canary.saw(client, await client.post_message("over the wire"))
        error = await canary.expect_error(
            "503 x3 then give up", lambda: client.post_message("fails")
        )
        assert error.attempts == 3
        await canary.expect_error("401 echoing the path", lambda: client.post_message("no"))
    # and a connection refused on a port nobody listens on
    async with AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=base, retry=FAST) as client:
        await canary.expect_error("connection refused", lambda: client.post_message("x"))
    # httpcore only carries the requests (and logs) on trio; asyncio has the pool's own path.
    canary.check(loggers={"hookapi", "httpcore"} if anyio_backend == "trio" else {"hookapi"})


async def test_the_secret_never_leaks_through_mocked_paths(
    canary: Canary,
    secret: str,
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
) -> None:
    echo = f"no hook at {message_url.upper()} (secret {secret})"
    plenty = rate_headers(50)
    router.post(message_url).mock(
        side_effect=[
            httpx.Response(200, text="ok", headers=plenty),
            httpx.Response(
                401, json={"error": "access_denied", "error_description": echo}, headers=plenty
            ),
            httpx.Response(404, text=echo, headers=plenty),
            httpx.Response(500, text=echo, headers=plenty),
            httpx.Response(503, text=echo, headers={"Retry-After": "1"}),
            httpx.Response(429, text=echo, headers=rate_headers(0)),
            httpx.ReadError(f"connection lost while talking to {message_url}"),
            httpx.Response(200, text="ok", headers=rate_headers(0, per_hour=1)),
        ]
    )
    expected = {
        "401": AuthenticationError,
        "404": NotFoundError,
        "500": InternalServerError,
        "503": ServiceUnavailableError,
        "429 from the service": RateLimitError,
    }
    async with make_client(retry=RetryPolicy.disabled()) as client:
        canary.saw(client, client.url, client.rate_limit)
        canary.saw(await client.post_message("ok"))
        for path, cls in expected.items():
            error = await canary.expect_error(path, lambda: client.post_message("x"))
            assert type(error) is cls
        # this one waits out the refusal's backoff (a throttle wait), then goes as the probe
        error = await canary.expect_error("read error", lambda: client.post_message("x"))
        assert type(error) is APIConnectionError
        canary.saw(await client.post_message("the last one this hour"))
        error = await canary.expect_error("local refusal", lambda: client.post_message("x"))
        assert isinstance(error, RateLimitError)
        assert error.local
        await canary.expect_error("invalid message", lambda: client.post_message(""))

    def hang_then_fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    # A store of its own: the hook's shared quota is spent by the client above.
    async with make_client(
        transport=httpx.MockTransport(hang_then_fail), retry=FAST, quota=MemoryQuota()
    ) as client:
        error = await canary.expect_error(
            "connect error naming the URL", lambda: client.post_message("x")
        )
        assert error.attempts == 0  # three tries, none of which left
        canary.saw(client._transport, client._transport.gate())
    await canary.expect_error("closed client", lambda: client.post_message("x"))
    canary.check(loggers={"hookapi"})
    throttle = [r for r in canary.caplog.records if "throttling" in r.getMessage()]
    assert throttle  # the throttle-wait record was among those searched


def test_the_secret_never_leaks_from_bad_construction(secret: str) -> None:
    texts: list[str] = []
    for url in (
        f"https://x.test/{secret}",
        f"https://x.test/a/{secret}?q=1",
        f"ftp://x.test/a/{secret}",
        f"'https://x.test/a/{secret}'",
        f"http://x.test:8080/a/{secret}",
    ):
        with pytest.raises(InvalidInputError) as caught:
            AsyncHookClient.from_url(url)
        texts += texts_of(caught.value)
    with pytest.raises(InvalidInputError) as caught:
        AsyncHookClient(hook_id=HOOK_ID, secret=secret + "/..", base_url="https://x.test")
    texts += texts_of(caught.value)
    with pytest.raises(InvalidInputError) as caught:
        AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url="http://x.test")
    texts += texts_of(caught.value)
    texts += [repr(Secret(secret)), str(Secret(secret)), f"{Secret(secret)!s:>80}"]
    assert all(secret not in text for text in texts)


SLIPS = [
    "{base}/{id}/{secret}/messages",
    "{base}/{id}/{secret}/message/send",
    "{base}/{id}/{secret}/extra",
    "{base}/{id}/{secret}/MESSAGE",
    "{base}/{id}/{secret}/%6Dessage",
    "{base}/{id}/{secret}/x/y",
    "{base}/{secret}/{id}",
    "{base}/{id}/x?secret={secret}",
    "https://{id}:{secret}@x.test/v1/a/b",
]


def test_the_secret_never_leaks_from_a_slip_in_the_url(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each slip once moved the secret to the hook id or the base URL, shown everywhere."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for slip in SLIPS:
        url = slip.format(base="https://x.test/v1", id=HOOK_ID, secret=secret)
        with pytest.raises(InvalidInputError) as caught:
            AsyncHookClient.from_url(url)
        texts += texts_of(caught.value)
    for hook_id in (secret, secret.upper(), f"{secret}/message", f"x{secret}"):
        with pytest.raises(InvalidInputError) as caught:
            AsyncHookClient(hook_id=hook_id, secret="s", base_url="https://x.test")
        texts += texts_of(caught.value)
    with pytest.raises(InvalidInputError) as caught:
        AsyncHookClient(hook_id=HOOK_ID, secret="s", base_url=f"https://x.test/{HOOK_ID}/{secret}")
    texts += texts_of(caught.value)
    texts += [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    assert all(secret.lower() not in text.lower() for text in texts)
