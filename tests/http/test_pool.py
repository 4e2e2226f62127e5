"""The default pool: reuse, bounds, timeouts, cancellation and closing, over real sockets."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpcore
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream

from hookapi import APITimeoutError, AsyncHookClient, Delivery, RetryPolicy
from hookapi._http._core import _as_httpx_errors
from hookapi._http._pool import ConnectionPool

pytestmark = pytest.mark.anyio

HOOK = "hook-1"
SECRET = "s" * 64


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Real sockets need real time."""
    return str(request.param)


@dataclass
class Server:
    """A keep-alive HTTP/1.1 server that counts connections and can hold answers back."""

    url: str = ""
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: int = 0
    hold: anyio.Event | None = None
    arrived: anyio.Event = field(default_factory=anyio.Event)
    gone: anyio.Event = field(default_factory=anyio.Event)
    close_after_each: bool = False
    drop_after_each: bool = False
    paths: list[str] = field(default_factory=list)

    async def handle(self, stream: SocketStream) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            async with stream:
                buffer = b""
                while True:
                    while b"\r\n\r\n" not in buffer:
                        chunk = await stream.receive()
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    lines = head.split(b"\r\n")
                    self.paths.append(lines[0].split(b" ")[1].decode())
                    length = next(
                        int(v)
                        for k, _, v in (ln.partition(b":") for ln in lines[1:])
                        if k.strip().lower() == b"content-length"
                    )
                    while len(buffer) < length:
                        buffer += await stream.receive()
                    buffer = buffer[length:]
                    self.requests += 1
                    self.arrived.set()
                    if self.hold is not None:
                        await self.hold.wait()
                    close = b"Connection: close\r\n" if self.close_after_each else b""
                    await stream.send(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + close + b"\r\nok"
                    )
                    if self.close_after_each or self.drop_after_each:
                        return
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            self.open_now -= 1
            self.gone.set()


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    server = Server()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.url = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        yield server
        tg.cancel_scope.cancel()


def client_for(server: Server, **options: object) -> AsyncHookClient:
    return AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url, **options)  # type: ignore[arg-type]


async def test_connections_are_reused() -> None:
    async with serving() as server, client_for(server) as client:
        for i in range(20):
            await client.post_message(f"m{i}")
    assert server.requests == 20
    assert server.connections == 1
    assert server.paths[0] == f"/{HOOK}/{SECRET}/message"


async def test_concurrency_is_bounded_by_max_connections() -> None:
    async with (
        serving() as server,
        client_for(server, max_connections=4) as client,
        anyio.create_task_group() as tg,
    ):
        for i in range(40):
            tg.start_soon(client.post_message, f"m{i}")
    assert server.requests == 40
    assert server.most_open <= 4
    assert server.connections <= 4


async def test_a_full_pool_times_out_as_not_sent() -> None:
    async with serving() as server:
        client = client_for(server, max_connections=1, retry=RetryPolicy.disabled())
        # Until its first answer the client sends one request at a time, to learn the quota.
        await client.post_message("learns that no quota is announced")
        server.hold, server.arrived = anyio.Event(), anyio.Event()
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(client.post_message, "holds the only connection")
            await server.arrived.wait()
            with pytest.raises(APITimeoutError) as caught:
                await client.post_message("finds no connection", timeout=0.05)
            server.hold.set()
    assert caught.value.delivery is Delivery.NOT_SENT
    assert "PoolTimeout" in str(caught.value)


async def test_the_server_closing_connections_is_handled() -> None:
    async with serving() as server:
        server.close_after_each = True
        async with client_for(server) as client:
            for i in range(5):
                await client.post_message(f"m{i}")
    assert server.requests == 5
    assert server.connections == 5


async def test_cancellation_mid_request_frees_the_slot() -> None:
    async with serving() as server:
        server.hold = anyio.Event()
        async with client_for(server, max_connections=1) as client:
            with anyio.move_on_after(0.05):
                await client.post_message("cancelled while waiting for the answer")
            server.hold.set()
            await client.post_message("still gets the only connection")
    assert server.requests == 2
    assert server.connections == 2  # the interrupted connection was not reused


async def test_connection_refused_is_a_connect_error() -> None:
    pool = ConnectionPool()
    async with serving() as server:
        url = server.url
    request = httpx.Request("POST", f"{url}/x", content=b"{}")
    with pytest.raises(httpx.ConnectError):
        await pool.handle_async_request(request)
    # https takes the same path, with a TLS context made on first use
    request = httpx.Request("POST", url.replace("http:", "https:") + "/x", content=b"{}")
    with pytest.raises(httpx.ConnectError):
        await pool.handle_async_request(request)
    await pool.aclose()


async def test_closing_the_pool() -> None:
    pool = ConnectionPool(max_connections=2)
    async with serving() as server:
        response = await pool.handle_async_request(
            httpx.Request("POST", f"{server.url}/x", content=b"{}")
        )
        await response.aread()
        await pool.aclose()  # the connection in use closes when its response does
        await response.aclose()
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        await stream.aclose()  # a second close is a no-op
        assert "idle=0" in repr(pool)
        with pytest.raises(httpx.UnsupportedProtocol, match="closed"):
            await pool.handle_async_request(httpx.Request("POST", f"{server.url}/x"))


async def test_only_http_urls() -> None:
    pool = ConnectionPool()
    with pytest.raises(httpx.UnsupportedProtocol):
        await pool.handle_async_request(httpx.Request("POST", "ftp://127.0.0.1/x"))


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async with serving() as server:
        server.drop_after_each = True  # closes without saying so in the answer
        async with client_for(server) as client:
            await client.post_message("first")
            await server.gone.wait()
            await client.post_message("second, on a fresh connection")
    assert server.connections == 2


def test_errors_become_httpx_errors() -> None:
    with pytest.raises(httpx.ReadTimeout), _as_httpx_errors():
        raise httpcore.ReadTimeout("late")
    with pytest.raises(httpx.ProtocolError), _as_httpx_errors():
        raise httpcore.ProtocolError("odd")
    original = httpx.ConnectError("as is")
    with pytest.raises(httpx.ConnectError) as caught, _as_httpx_errors():
        raise original
    assert caught.value is original
    with pytest.raises(KeyError), _as_httpx_errors():
        raise KeyError("not a transport error")


FALLBACK = """
import asyncio, logging, socket, sys
sys.modules["httptools"] = None  # as on an interpreter httptools has no build for
logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
import httpx
from hookapi import ConnectionPool
from hookapi._http import LLHTTP

async def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    pool = ConnectionPool()
    try:
        await pool.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{port}/"))
    except httpx.ConnectError as exc:
        print("ConnectError via", type(exc.__cause__).__module__.split(".")[0])
    print("LLHTTP", LLHTTP, "asyncio path", pool._asyncio)

asyncio.run(main())
"""


def test_without_httptools_asyncio_requests_take_httpcores_connections() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FALLBACK], capture_output=True, text=True, check=True, timeout=60
    )
    assert "hookapi: hookapi's pool: asyncio requests on httpcore's connections" in out.stderr
    assert "ConnectError via httpcore" in out.stdout
    assert "LLHTTP False asyncio path False" in out.stdout
