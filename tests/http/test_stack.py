"""The review's findings, each over real loopback sockets on both backends where both apply.

Bad hosts and paths, compressed error bodies, a second event loop, a name whose first address
is dead, stray warnings under cancellation, a pool shared by many clients.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import random
import secrets
import socket
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpcore
import httpx
import pytest
import trio
from anyio.abc import ByteStream, SocketAttribute

import hookapi
from hookapi import (
    APIConnectionError,
    AsyncHookClient,
    BadRequestError,
    ConnectionPool,
    Delivery,
    InvalidInputError,
    RetryPolicy,
    WrongEventLoopError,
)
from hookapi._http import _core
from hookapi._http._h1 import open_connection
from hookapi.testing import VirtualTimeEventLoop

pytestmark = pytest.mark.anyio

HOOK = "hook-1"
#: Drawn per process: another process running this file (a second test run on the machine)
#: sends its own, so its requests that reach one of these servers' ports are told apart.
SECRET = secrets.token_hex(24)
ERROR = {"error": "bad_request", "error_description": "The message is too long"}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Real sockets need real time."""
    return str(request.param)


@dataclass
class Server:
    """An HTTP/1.1 server on loopback that records each request head and answers from a script."""

    url: str = ""
    heads: list[bytes] = field(default_factory=list)
    #: Requests for another secret: a client of another test (or of another process) that
    #: reached this server's port once the kernel gave it out again. Answered 404, not counted.
    strays: list[bytes] = field(default_factory=list)
    connections: int = 0
    status: int = 200
    #: Set once a request for this server's secret has come whole.
    arrived: anyio.Event = field(default_factory=anyio.Event)

    def answer(self, head: bytes) -> bytes:
        if self.status == 200:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        body = json.dumps(ERROR).encode()
        accepted = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"accept-encoding":
                accepted = value.strip().lower()
        extra = b""
        # As a compressing proxy does: gzip unless the client asked for identity only.
        if accepted != b"identity":
            body = gzip.compress(body)
            extra = b"Content-Encoding: gzip\r\n"
        return (
            b"HTTP/1.1 %d Bad Request\r\nContent-Type: application/json\r\n%b"
            b"Content-Length: %d\r\n\r\n%b" % (self.status, extra, len(body), body)
        )

    async def handle(self, stream: ByteStream) -> None:
        self.connections += 1
        buffer = b""
        try:
            async with stream:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buffer) < length:
                        buffer += await stream.receive()
                    buffer = buffer[length:]
                    if f"/{SECRET}/".encode() not in head.split(b"\r\n", 1)[0]:
                        self.strays.append(head)
                        await stream.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                        continue
                    self.heads.append(head)
                    self.arrived.set()
                    await stream.send(self.answer(head))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    server = Server()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.url = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        yield server
        tg.cancel_scope.cancel()


def path_of(head: bytes) -> str:
    return head.split(b" ")[1].decode("ascii")


# Bad hosts and paths


@pytest.mark.parametrize(
    "base_url",
    [
        "https://" + "a" * 64 + ".example/",  # a DNS label over 63 characters
        "https://" + "a." * 127 + "example/",  # a name over 253 characters
        "https://xn--a.example/",  # an "xn--" label that is not valid IDNA
        "https://a..example/",  # an empty label
    ],
)
def test_hosts_no_resolver_takes_are_invalid_input(base_url: str) -> None:
    with pytest.raises(InvalidInputError, match="host"):
        AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=base_url)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_name_only_the_resolver_refuses_is_a_connect_error() -> None:
    with pytest.raises(httpx.ConnectError, match="not a valid host name"):
        await open_connection(
            (b"http", b"a" * 64 + b".test", 80), ssl_context=None, connect_timeout=5
        )


async def test_the_base_path_is_sent_as_given() -> None:
    async with serving() as server:
        base = f"{server.url}/a%2Fb/c%25d/e%3Ff/"
        async with AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=base) as client:
            assert client.url == f"{server.url}/a%2Fb/c%25d/e%3Ff/{HOOK}/***/message"
            await client.post_message("hi")
        url = f"{server.url}/a%2Fb/c%25d/e%3Ff/{HOOK}/{SECRET}/message"
        async with AsyncHookClient.from_url(url) as client:
            await client.post_message("hi")
    expected = f"/a%2Fb/c%25d/e%3Ff/{HOOK}/{SECRET}/message"
    assert [path_of(head) for head in server.heads] == [expected, expected]


# Compressed error bodies


async def test_a_json_error_body_reaches_the_error_parsed() -> None:
    async with serving() as server:
        server.status = 400
        async with AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url) as client:
            with pytest.raises(BadRequestError) as caught:
                await client.post_message("hi")
    assert b"\r\nAccept-Encoding: identity\r\n" in server.heads[0]
    assert caught.value.error == "bad_request"
    assert caught.value.error_description == "The message is too long"


# A second event loop


def _counting_transport(calls: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_client_used_on_a_second_loop_refuses_before_sending(backend: str) -> None:
    calls: list[httpx.Request] = []
    client = AsyncHookClient(
        hook_id=HOOK, secret=SECRET, base_url="https://h.test", transport=_counting_transport(calls)
    )
    anyio.run(client.post_message, "first", backend=backend)
    with pytest.raises(WrongEventLoopError, match="inside the loop") as caught:
        anyio.run(client.post_message, "second", backend=backend)
    assert isinstance(caught.value, hookapi.HookAPIError)
    assert len(calls) == 1  # the second was never sent


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_pool_used_on_a_second_loop_refuses(backend: str) -> None:
    async def post(url: str, pool: ConnectionPool) -> int:
        client = AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=url, transport=pool)
        async with client:
            result = await client.post_message("hi")
        await pool.aclose()  # its sockets go with this loop; the pool still knows the loop
        return result.attempts

    async def serve_and_post(pool: ConnectionPool) -> tuple[int, int, Exception | None]:
        async with serving() as server:
            try:
                attempts = await post(server.url, pool)
            except WrongEventLoopError as exc:
                return len(server.heads), 0, exc
            return len(server.heads), attempts, None

    pool = ConnectionPool()
    # The client's own count of requests sent, beside the server's: should the server ever
    # count more, the two tell a retry of the client's from a request of another client.
    assert anyio.run(serve_and_post, pool, backend=backend) == (1, 1, None)
    sent, _, error = anyio.run(serve_and_post, pool, backend=backend)
    assert sent == 0
    assert isinstance(error, WrongEventLoopError)
    assert "connection pool" in str(error)


# A failure after the request arrived


@pytest.mark.parametrize(
    "failure",
    [
        httpcore.ReadError("lost"),
        httpcore.ReadTimeout("late"),
        httpcore.RemoteProtocolError("garbled"),
        httpcore.WriteError("cut"),
        httpcore.NetworkError("down"),
    ],
    ids=type,
)
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_failure_after_the_request_arrived_is_never_sent_again(
    failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read failing once the server has the request: unknown delivery, no second post.

    On trio the pool's connections are httpcore's; these are the failures its reads raise (as
    httpx's errors) once the request is out. None may be taken for a failure before sending,
    which the default policy retries: that would post the message twice.
    """
    async with serving() as server:

        async def read(self: object, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
            await server.arrived.wait()
            raise failure

        monkeypatch.setattr(_core._BoundStream, "read", read)
        async with AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.post_message("once")
    assert caught.value.delivery is Delivery.UNKNOWN
    assert caught.value.attempts == 1
    assert len(server.heads) == 1


# A name whose first address is dead


@contextmanager
def dead_and_live_ports() -> Iterator[tuple[int, socket.socket]]:
    """A port whose SYNs are dropped, honestly: a listener with a full accept queue.

    With a backlog of 0 Linux queues one connection; once one is queued (and never accepted)
    the kernel drops every further SYN, so a connect to it neither fails nor succeeds, exactly
    as to an address behind a broken route.
    """
    dead = socket.socket()
    filler = socket.socket()
    try:
        dead.bind(("127.0.0.1", 0))
        dead.listen(0)
        filler.connect(dead.getsockname())
        yield dead.getsockname()[1], filler
    finally:
        filler.close()
        dead.close()


VIRTUAL_ASYNCIO = pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {"loop_factory": VirtualTimeEventLoop})]
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_happy_eyeballs_reach_the_live_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two addresses for one name, the dead one first: the live one answers within the timeout.

    Real time (the race waits its 0.25 s): on virtual time the clock could jump past the
    connect timeout while the kernel completes the live connection.
    """
    async with serving() as server:
        live_port = int(server.url.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        with dead_and_live_ports() as (dead_port, _):
            stream = socket.SOCK_STREAM
            answers = [
                (socket.AF_INET, stream, 6, "", ("127.0.0.1", dead_port)),
                (socket.AF_INET, stream, 6, "", ("127.0.0.1", live_port)),
            ]

            async def resolve(host: str, *args: Any, **kwargs: Any) -> list[Any]:
                assert host == "hooks.test"
                return answers

            monkeypatch.setattr(loop, "getaddrinfo", resolve)
            pool = ConnectionPool()
            client = AsyncHookClient(
                hook_id=HOOK,
                secret=SECRET,
                base_url="http://hooks.test:1",
                allow_insecure_http=True,
                transport=pool,
                timeout=30.0,
                retry=RetryPolicy.disabled(),
            )
            async with pool, client:
                started = anyio.current_time()
                result = await client.post_message("hi")
                elapsed = anyio.current_time() - started
            for _ in range(10):  # the losing attempt's cancellation and the close complete
                await asyncio.sleep(0)
    assert result.status_code == 200
    assert elapsed < 30.0  # not the whole connect timeout spent on the dead address
    assert len(server.heads) == 1


@VIRTUAL_ASYNCIO
async def test_the_connect_timeout_covers_the_whole_race(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    with dead_and_live_ports() as (one, _), dead_and_live_ports() as (two, _):
        answers = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)) for port in (one, two)
        ]

        async def resolve(*args: Any, **kwargs: Any) -> list[Any]:
            return answers

        monkeypatch.setattr(loop, "getaddrinfo", resolve)
        started = anyio.current_time()
        with pytest.raises(httpx.ConnectTimeout):
            await open_connection((b"http", b"hooks.test", 1), ssl_context=None, connect_timeout=3)
        assert anyio.current_time() - started == pytest.approx(3.0)


# Stray warnings under cancellation


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_random_cancellations_leave_no_async_generator_behind() -> None:
    rng = random.Random(11)
    async with (
        serving() as server,
        AsyncHookClient(
            hook_id=HOOK, secret=SECRET, base_url=server.url, retry=RetryPolicy.disabled()
        ) as client,
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cancelled = 0
            for i in range(1000):
                steps = rng.randrange(12)
                async with anyio.create_task_group() as tg:

                    async def cancel_after(scope: anyio.CancelScope, steps: int) -> None:
                        for _ in range(steps):
                            await trio.lowlevel.checkpoint()
                        scope.cancel()

                    tg.start_soon(cancel_after, tg.cancel_scope, steps)
                    with suppress(APIConnectionError):
                        await client.post_message(f"m{i}")
                    tg.cancel_scope.cancel()
                cancelled += tg.cancel_scope.cancelled_caught
                if i % 100 == 0:
                    gc.collect()
            gc.collect()
            await trio.lowlevel.checkpoint()
    assert cancelled > 100  # many requests were cut somewhere on their way
    assert [str(w.message) for w in caught if "garbage collected" in str(w.message)] == []


# Many hooks, one pool


async def test_many_clients_share_one_pool_and_its_owner_closes_it() -> None:
    async with serving() as server:
        pool = ConnectionPool(max_connections=8, max_connections_per_host=4)
        clients = [
            AsyncHookClient(hook_id=f"hook-{n}", secret=SECRET, base_url=server.url, transport=pool)
            for n in range(50)
        ]
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(client.post_message, "hi")
        for client in clients:
            await client.aclose()  # closing a client leaves the shared pool open
        assert pool.idle_connections >= 1
        await AsyncHookClient(
            hook_id="late", secret=SECRET, base_url=server.url, transport=pool
        ).post_message("still open")
        await pool.aclose()
        assert pool.idle_connections == 0
        with pytest.raises(APIConnectionError) as caught:
            await AsyncHookClient(
                hook_id="after", secret=SECRET, base_url=server.url, transport=pool
            ).post_message("closed")
    assert caught.value.delivery is Delivery.NOT_SENT
    assert len(server.heads) == 51
    assert server.connections <= 4  # the per-host limit held
    assert {path_of(head).split("/")[1] for head in server.heads} >= {"hook-0", "hook-49"}


def test_pool_limits_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="max_connections_per_host"):
        ConnectionPool(max_connections_per_host=0)
    with pytest.raises(InvalidInputError, match="max_connections must be an int"):
        ConnectionPool(max_connections=True)
