"""No frame local of a failed post holds the secret or the proxy's credentials.

Error trackers (Sentry by default), ``pytest -l`` and rich's ``show_locals`` render the local
variables of every frame in an error's traceback, and of every error it chains. Each failure
path (refused, unresolvable, TLS, read timeout, reset mid-answer, a proxy's 407 and 502, and a
post cancelled by its caller's own timeout), on asyncio and trio, with and without an
authenticating proxy, is walked three ways: the standard library's
``TracebackException(capture_locals=True)``, every frame's ``f_locals`` reached through the
tracebacks, and the JSON event of the real Sentry SDK.

Servers listen on 127.0.0.1 only; the unresolvable host is under ``.invalid``, which never
resolves. The sockets are real, so time is too (``anyio_backend`` below).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import sentry_sdk
import trustme
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from hookapi import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncHookClient,
    Delivery,
    HookAPIError,
    HookClient,
    RetryPolicy,
    Secret,
)

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

HOOK = "hook-1"
PROXY_USER = "hookproxy"
#: A name that must never resolve (RFC 6761), so the lookup fails without any traffic.
NOWHERE = "hookapi-secret-locals.invalid"
#: The read timeout's only real wait; every other path fails at once.
READ_TIMEOUT = 0.3
TIMEOUT = 10.0
#: Two attempts, through tenacity's frames, a hundredth of a second apart.
RETRIED = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.01, jitter=False)

PATHS = (
    "refused",
    "refused-retried",
    "dns",
    "tls-plain",
    "tls-untrusted",
    "read-timeout",
    "reset",
    "cancelled",
)
PROXY_PATHS = ("proxy-407", "proxy-407-http", "proxy-502")
CASES = [(path, False) for path in PATHS] + [(path, True) for path in PATHS + PROXY_PATHS]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Real sockets (and a proxy in another process) need real time."""
    return str(request.param)


@dataclass(frozen=True)
class AuthProxy:
    """proxy.py on loopback, asking for Basic credentials."""

    port: int
    password: str

    def url(self, password: str | None = None) -> str:
        return f"http://{PROXY_USER}:{password or self.password}@127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def auth_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthProxy]:
    where = tmp_path_factory.mktemp("proxy")
    port_file = where / "port"
    password = secrets.token_hex(12)
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"]
    command += ["--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1"]
    command += ["--basic-auth", f"{PROXY_USER}:{password}", "--log-level", "WARNING"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):  # it writes the port once it listens
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.01)
        else:  # pragma: no cover
            pytest.fail("proxy.py did not start")
        yield AuthProxy(port=int(port_file.read_text().strip()), password=password)
    finally:
        process.terminate()
        process.wait(10)


def forms(value: str) -> list[str]:
    """``value`` as it may show: itself and percent-encoded (searched case-insensitively)."""
    encoded = "".join(f"%{byte:02X}" for byte in value.encode())
    return [value, encoded]


def needles(secret: str, proxy_password: str | None) -> list[str]:
    found = forms(secret)
    if proxy_password is not None:
        pair = f"{PROXY_USER}:{proxy_password}"
        found += forms(proxy_password) + forms(pair)
        found.append(base64.b64encode(pair.encode()).decode())
    return found


def chain_of(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it reaches: causes, contexts and group members."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is other for other in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            todo += current.exceptions
    return seen


def rendered_frames(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def frame_locals(exc: BaseException) -> Iterator[tuple[str, str, str]]:
    """(function, local name, repr) of every frame local in every traceback of the chain."""
    for current in chain_of(exc):
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for name, value in frame.f_locals.items():
                try:
                    shown = repr(value)
                except Exception as error:  # a broken repr hides nothing
                    shown = f"<repr failed: {error!r}>"
                yield frame.f_code.co_qualname, name, shown
            tb = tb.tb_next


class ListTransport(Transport):
    """Sentry's transport, replaced: envelopes are kept in a list, never sent."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


def sentry_json(exc: BaseException) -> str:
    """The JSON of the event the real Sentry SDK builds for ``exc``, locals included."""
    transport = ListTransport()
    sentry_sdk.init(
        dsn="http://key@127.0.0.1:1/1",
        transport=transport,
        include_local_variables=True,
    )
    try:
        sentry_sdk.capture_exception(exc)
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()
    assert transport.envelopes, "Sentry built no event"
    return "\n".join(envelope.serialize().decode("utf-8") for envelope in transport.envelopes)


# The hostile servers, each on 127.0.0.1.

Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]


async def _read_head(stream: anyio.abc.ByteStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()


async def plain_answer(stream: anyio.abc.ByteStream) -> None:
    """A plain-TCP server: answers whatever arrives (a TLS hello) with HTTP, and closes."""
    await stream.receive()
    await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


async def ok_answer(stream: anyio.abc.ByteStream) -> None:
    await _read_head(stream)
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


async def never_answers(stream: anyio.abc.ByteStream) -> None:
    await _read_head(stream)
    await anyio.sleep_forever()


async def resets_mid_answer(stream: anyio.abc.ByteStream) -> None:
    """Half a status line, then a reset (SO_LINGER 0): the answer breaks off."""
    await _read_head(stream)
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Le")
    raw = stream.extra(SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    async def guarded(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with contextlib.suppress(Exception):
                await handler(stream)

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    listener: anyio.abc.Listener[Any] = tcp if tls is None else TLSListener(tcp, tls)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, guarded)
        yield port
        tg.cancel_scope.cancel()


async def closed_port() -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port: int = listener.extra(SocketAttribute.local_port)
    await listener.aclose()
    return port


@asynccontextmanager
async def target(path: str) -> AsyncIterator[str]:
    """The base URL that fails the way ``path`` says."""
    if path in ("refused", "refused-retried", "proxy-502"):
        scheme = "https" if path == "proxy-502" else "http"
        yield f"{scheme}://127.0.0.1:{await closed_port()}"
    elif path == "dns":
        yield f"https://{NOWHERE}"
    elif path == "tls-plain":
        async with serving(plain_answer) as port:
            yield f"https://127.0.0.1:{port}"
    elif path == "tls-untrusted":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
        async with serving(ok_answer, context) as port:
            yield f"https://127.0.0.1:{port}"
    elif path in ("read-timeout", "cancelled"):
        async with serving(never_answers) as port:
            yield f"http://127.0.0.1:{port}"
    elif path == "reset":
        async with serving(resets_mid_answer) as port:
            yield f"http://127.0.0.1:{port}"
    else:  # proxy-407 (a CONNECT tunnel) and proxy-407-http (a forwarded request)
        async with serving(ok_answer) as port:
            scheme = "http" if path == "proxy-407-http" else "https"
            yield f"{scheme}://127.0.0.1:{port}"


async def failed_post(client: AsyncHookClient, path: str) -> BaseException:
    """The error a caller gets; this frame holds nothing but the client and the error.

    ``cancelled``: the caller's own timeout cancels the post while it waits for the answer.
    """
    try:
        if path == "cancelled":
            with anyio.fail_after(READ_TIMEOUT):
                await client.post_message("hello")
        else:
            await client.post_message("hello")
    except (HookAPIError, TimeoutError) as exc:
        return exc
    raise AssertionError("the post did not fail")


async def fail(path: str, secret: str, proxy: AuthProxy | None, wrong: str) -> BaseException:
    async with target(path) as base:
        options: dict[str, Any] = {}
        if proxy is not None:
            options["proxy"] = proxy.url(wrong if path.startswith("proxy-407") else None)
        client = AsyncHookClient(
            hook_id=HOOK,
            secret=Secret(secret),
            base_url=base,
            timeout=READ_TIMEOUT if path == "read-timeout" else TIMEOUT,
            retry=RETRIED if path == "refused-retried" else RetryPolicy.disabled(),
            trust_env=False,
            **options,
        )
        async with client:
            return await failed_post(client, path)


def _found(needles: list[str], text: str) -> list[str]:
    lowered = text.lower()
    return [needle for needle in needles if needle.lower() in lowered]


@pytest.mark.parametrize(("path", "proxied"), CASES)
async def test_no_frame_local_holds_the_secret(
    path: str, proxied: bool, auth_proxy: AuthProxy, anyio_backend: str
) -> None:
    secret = secrets.token_hex(20)
    proxy = auth_proxy if proxied else None
    wrong = secrets.token_hex(12)  # the password a 407 answers
    error = await fail(path, secret, proxy, wrong)
    hidden = needles(secret, auth_proxy.password if proxied else None)
    if path.startswith("proxy-407"):
        hidden += needles(secret, wrong)[2:]  # the credentials this client sent

    # It still says what happened, and chains what the transport said, without frames.
    if path == "cancelled":
        assert isinstance(error, TimeoutError)  # the caller's own, unchanged
    else:
        assert isinstance(error, APIConnectionError | APIStatusError), repr(error)
    if path == "read-timeout":
        assert isinstance(error, APITimeoutError)
    if path == "proxy-407-http":
        assert isinstance(error, APIStatusError)
        assert error.status_code == 407
    if isinstance(error, APIConnectionError):
        cause = error.__cause__
        assert isinstance(cause, httpx.TransportError)
        assert f"{type(cause).__name__}: {str(cause).rstrip(' .')}" in str(error)
        assert all(link.__traceback__ is None for link in chain_of(cause))
        if path in ("refused", "dns", "tls-plain", "tls-untrusted", "proxy-502"):
            assert error.delivery is Delivery.NOT_SENT
        if path == "refused-retried" and not proxied:
            assert "tenacity" in rendered_frames(error)  # the second attempt went through it
    rendered = "".join(
        traceback.TracebackException(
            type(error), error, error.__traceback__, capture_locals=True
        ).format()
    )
    assert "self = <AsyncHookClient" in rendered  # locals were rendered: the search means something
    raw = [(where, name) for where, name, shown in frame_locals(error) if _found(hidden, shown)]
    event = sentry_json(error)
    assert '"vars"' in event  # so were they in Sentry's event
    assert HOOK in event
    leaks = {
        "TracebackException": _found(hidden, rendered),
        "f_locals": raw,
        "sentry": _found(hidden, event),
    }
    assert not any(leaks.values()), leaks


def failed_sync_post(client: HookClient) -> HookAPIError:
    """As :func:`failed_post`, for the sync client (whose portal thread runs the async one)."""
    try:
        client.post_message("hello")
    except HookAPIError as exc:
        return exc
    raise AssertionError("the post did not fail")


def test_the_sync_client_chains_the_same_copies() -> None:
    secret = secrets.token_hex(20)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HookClient(
        hook_id=HOOK,
        secret=Secret(secret),
        base_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy.disabled(),
        trust_env=False,
    )
    with client:
        error = failed_sync_post(client)
    assert isinstance(error, APIConnectionError)
    assert isinstance(error.__cause__, httpx.ConnectError)
    rendered = "".join(
        traceback.TracebackException(
            type(error), error, error.__traceback__, capture_locals=True
        ).format()
    )
    assert "self = <HookClient" in rendered or "self = <AsyncHookClient" in rendered
    assert not _found(forms(secret), rendered)
    assert not [where for where, _, shown in frame_locals(error) if _found(forms(secret), shown)]
    assert not _found(forms(secret), sentry_json(error))
