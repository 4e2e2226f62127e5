"""The pool's asyncio connections against a scripted raw-bytes server: framing, bounds, failures.

Asyncio only (the path exists on asyncio alone); real time, except where a timeout must pass,
which runs on the virtual clock: the server there never answers, so no jump can overtake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import respx
import trustme

from hookapi import AsyncHookClient
from hookapi._http._h1 import (
    HIGH_WATER,
    MAX_HEAD,
    PIECE,
    H1Body,
    H1Connection,
    _expire,
    open_connection,
)
from hookapi._http._pool import ConnectionPool, _Slots, _time_out
from hookapi._http._transport import FIELDS_EXTENSION, RATE_LIMIT_EXTENSION
from hookapi._quota import RateLimit
from hookapi.emulator import Emulator
from hookapi.testing import VirtualTimeEventLoop, assert_posted

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

VIRTUAL = pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {"loop_factory": VirtualTimeEventLoop})]
)


@pytest.fixture
def anyio_backend() -> str:
    """Asyncio on real time: the kernel moves the bytes."""
    return "asyncio"


@dataclass
class Server:
    """What the scripted server saw."""

    url: str = ""
    connections: int = 0
    ended_by_client: int = 0  # connections the client closed (not the server's own shutdown)
    stopping: bool = False
    requests: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Peer:
    """One accepted connection, as the handler drives it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: Server

    async def request(self) -> bytes:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial and not self.server.stopping:
                self.server.ended_by_client += 1  # closed between requests
            raise
        lower = head.lower()
        body = b""
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                body += (await self.reader.readexactly(size + 2))[:-2]
                if not size:
                    break
        elif length := re.search(rb"content-length: *([0-9]+)", lower):
            body = await self.reader.readexactly(int(length[1]))
        self.server.requests.append(head + body)
        self.server.arrived.set()
        return head + body

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            if not self.server.stopping:
                self.server.ended_by_client += 1  # closed while the answer went out
            raise

    def reset(self) -> None:
        """Close with a TCP reset (linger 0) rather than a clean FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def until_eof(self) -> None:
        with contextlib.suppress(ConnectionError):  # a reset is a close too
            while await self.reader.read(65536):
                pass
        if not self.server.stopping:
            self.server.ended_by_client += 1


Handler = Callable[[Peer], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    server = Server()
    tasks: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        writers.append(writer)
        try:
            await handler(Peer(reader, writer, server))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/hook/secret"
    try:
        yield server
    finally:
        listener.close()
        server.stopping = True
        server.release.set()
        for writer in writers:
            writer.transport.abort()  # every handler then ends on its own
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.wait_closed()


async def ended(server: Server, count: int = 1) -> None:
    """Let the loop run until the server saw the client close ``count`` connections."""
    for _ in range(1000):
        if server.ended_by_client >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{server.ended_by_client} of {count} connections were closed")


def answering(*answers: bytes, close: bool = False) -> Handler:
    """On each connection: read a request, send the next answer, ...; then close or wait."""

    async def handle(peer: Peer) -> None:
        for answer in answers:
            await peer.request()
            await peer.send(answer)
        if not close:
            await peer.until_eof()

    return handle


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def request(
    server: Server, method: str = "GET", timeout: dict[str, float] | None = None, **options: Any
) -> httpx.Request:
    extensions = {} if timeout is None else {"timeout": timeout}
    return httpx.Request(method, server.url, extensions=extensions, **options)


async def fetch(pool: ConnectionPool, server: Server, **options: Any) -> httpx.Response:
    response = await pool.handle_async_request(request(server, **options))
    await response.aread()
    return response


async def test_content_length_answers_reuse_one_connection() -> None:
    answer = b"HTTP/1.1 201 Created here\r\nContent-Length: 5\r\nX-A:  spaced \t\r\n\r\nhello"
    async with serve(answering(answer, answer, answer)) as server, ConnectionPool() as pool:
        for _ in range(3):
            response = await fetch(pool, server, method="POST", content=b'{"a": 1}')
            assert response.status_code == 201
            assert response.content == b"hello"
            assert response.headers["x-a"] == "spaced"
            assert response.extensions["http_version"] == b"HTTP/1.1"
            assert response.extensions["reason_phrase"] == b"Created here"
            assert isinstance(response.stream, H1Body)  # the asyncio path
        assert "idle=1" in repr(pool)
        await pool.aclose()
        await ended(server)  # closing the pool closed it
    assert server.requests[0].startswith(b"POST /hook/secret HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'\r\n\r\n{"a": 1}')
    assert server.connections == 1


async def test_chunked_with_extensions_and_trailers() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6;x\r\n world\r\n0\r\nX-Trailer: yes\r\nX-More: 1\r\n\r\n"
    )
    async with serve(answering(answer, answer)) as server, ConnectionPool() as pool:
        for _ in range(2):
            response = await fetch(pool, server)
            assert response.content == b"hello world"
    assert server.connections == 1


async def test_a_body_without_length_runs_to_the_close() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the very end"
    async with serve(answering(answer, close=True)) as server, ConnectionPool() as pool:
        for _ in range(2):
            assert (await fetch(pool, server)).content == b"until the very end"
    assert server.connections == 2


RATE_LIMIT_HEADS = {
    "all four": b"X-Rate-Limit-Total-Per-Hour: 60\r\nX-Rate-Limit-Total-Per-Day: 600\r\n"
    b"X-Rate-Limit-Used: 7\r\nX-Rate-Limit-Remaining: 53\r\n",
    "case and spaces": b"x-RATE-limit-remaining:  5 \t\r\nX-Rate-Limit-USED:3\r\n",
    "usual spelling, spaced": b"X-Rate-Limit-Remaining: 5 \t\r\nX-Rate-Limit-Used:\t3  \r\n"
    b"Content-Type: text/plain \r\nServer: x\r\nDate: y\r\nConnection: keep-alive\r\n",
    "first of two wins": b"X-Rate-Limit-Remaining: 9\r\nX-Rate-Limit-Remaining: 1\r\n",
    "malformed": b"X-Rate-Limit-Remaining: -1\r\nX-Rate-Limit-Used: 1e3\r\n"
    b"X-Rate-Limit-Total-Per-Hour: 99999999999999\r\nX-Rate-Limit-Total-Per-Day: \xb2\r\n",
    "unknown suffix only": b"X-Rate-Limit-Reset: 30\r\n",
    "none": b"X-Other: 1\r\n",
}


@pytest.mark.parametrize("head", RATE_LIMIT_HEADS.values(), ids=RATE_LIMIT_HEADS.keys())
async def test_rate_limit_headers_are_read_while_parsing_as_from_headers_reads_them(
    head: bytes,
) -> None:
    # The connection picks the four values out as llhttp reports them; the answer must be the
    # one RateLimit.from_headers gives for the same headers (the path any other transport takes).
    interim = b"HTTP/1.1 103 Early Hints\r\nX-Rate-Limit-Remaining: 77\r\n\r\n"
    answer = interim + b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok"
    async with serve(answering(answer)) as server, ConnectionPool() as pool:
        response = await fetch(pool, server)
    parsed = response.extensions[RATE_LIMIT_EXTENSION]
    assert parsed == RateLimit.from_headers(response.headers)
    if head == RATE_LIMIT_HEADS["all four"]:
        assert parsed == RateLimit(per_hour=60, per_day=600, used=7, remaining=53)


async def test_a_client_request_sends_its_prebuilt_fields_as_the_general_path_would() -> None:
    # The client's header lines are built once and sent as they are (FIELDS_EXTENSION); the
    # bytes on the wire must be those the general path renders from the request's headers.
    async with serve(answering(OK, OK, OK)) as server, ConnectionPool() as pool:
        base = server.url.rsplit("/hook/", 1)[0]
        client = AsyncHookClient(
            hook_id="h1", secret="s" * 12, base_url=base, transport=pool, user_agent="ua/1"
        )
        async with client:
            await client.post_message('héllo "there"')
        body = b'{"message":"h\xc3\xa9llo \\"there\\""}'
        pairs = [*client._header_pairs, (b"Content-Length", b"%d" % len(body))]
        with_fields = request(server, "POST", content=body, headers=pairs)
        with_fields.extensions[FIELDS_EXTENSION] = client._fields
        await (await pool.handle_async_request(with_fields)).aread()
        general = request(server, "POST", content=body, headers=pairs)
        await (await pool.handle_async_request(general)).aread()
    client_wire, fields_wire, general_wire = server.requests
    assert fields_wire == general_wire
    assert client_wire == general_wire.replace(b"/hook/secret", b"/h1/" + b"s" * 12 + b"/message")
    assert client_wire.split(b"\r\n")[1:7] == [
        b"Host: " + base.removeprefix("http://").encode(),
        b"Accept: */*",
        b"Accept-Encoding: identity",
        b"Content-Type: application/json",
        b"User-Agent: ua/1",
        b"Content-Length: %d" % len(body),
    ]


async def test_interim_answers_are_skipped() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    async with serve(answering(answer, OK)) as server, ConnectionPool() as pool:
        for _ in range(2):
            response = await fetch(pool, server)
            assert (response.status_code, response.content) == (200, b"ok")
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "method"),
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", "POST"),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", "GET"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", "GET"),
    ],
)
async def test_answers_without_a_body_or_kept_alive(answer: bytes, method: str) -> None:
    async with serve(answering(answer, answer)) as server, ConnectionPool() as pool:
        for _ in range(2):
            response = await fetch(pool, server, method=method)
            assert response.content == (b"ok" if b"\r\n\r\nok" in answer else b"")
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok and more",  # unasked-for bytes
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",  # an answer more
    ],
)
async def test_connections_that_must_not_be_reused(answer: bytes) -> None:
    async with serve(answering(answer, answer)) as server, ConnectionPool() as pool:
        for _ in range(2):
            assert (await fetch(pool, server)).content == b"ok"
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def answer_then_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)  # no "Connection: close": the close comes unannounced

    async with serve(answer_then_close) as server, ConnectionPool() as pool:
        for _ in range(3):
            assert (await fetch(pool, server)).content == b"ok"
    assert server.connections == 3


async def test_an_expired_idle_connection_is_not_reused() -> None:
    async with (
        serve(answering(OK, OK)) as server,
        ConnectionPool(keepalive_expiry=0) as pool,
    ):
        for _ in range(2):
            await fetch(pool, server)
        await ended(server)  # the first, expired when the second request came
    assert server.connections == 2


MALFORMED = {
    "HTTP/2 status line": b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "two-digit status": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    "not HTTP": b"ICY 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "control character in reason": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok",
    "space in header name": b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "no colon": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
    "bare LF in value": b"HTTP/1.1 200 OK\r\nX-A: a\nb\r\nContent-Length: 2\r\n\r\nok",
    "letters in Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    "negative Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
    "listed Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    "huge Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\nok",
    "conflicting Content-Lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"
    ),
    "gzip Transfer-Encoding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "two Transfer-Encodings": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    "empty chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
    "chunk longer than its size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n"
    ),
    "malformed trailer": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nbad\r\n\r\n"
    ),
    "switching protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    "endless interim answers": b"HTTP/1.1 100 Continue\r\n\r\n" * 20,
    "too many headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
    "oversized head": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * MAX_HEAD + b"\r\n\r\n",
    "oversized head, unfinished": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * (2 * MAX_HEAD),
    "oversized chunk line": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;" + b"x" * (8 * MAX_HEAD)
    ),
    "space after chunk size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n"
    ),
    "Content-Length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "HTTP/2.0 version": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "status below 100": b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
    "101 without Upgrade": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "endless header value": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * (8 * MAX_HEAD),
    "too many trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-A: 1\r\n" * 102
    ),
    "oversized trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: "
        + b"a" * MAX_HEAD
        + b"\r\n\r\n"
    ),
    "oversized trailers, unfinished": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: " + b"a" * (8 * MAX_HEAD)
    ),
}


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_answers_are_protocol_errors(answer: bytes) -> None:
    async def answer_then_wait(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await peer.until_eof()

    async with serve(answer_then_wait) as server, ConnectionPool(max_connections=1) as pool:
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(pool, server)
        assert "idle=0" in repr(pool)
        await ended(server)  # the broken connection was closed, not kept


@pytest.mark.parametrize("reuse", [False, True], ids=["new connection", "reused connection"])
async def test_closing_before_answering(reuse: bool) -> None:
    async def close_on_request(peer: Peer) -> None:
        if reuse:
            await peer.request()
            await peer.send(OK)
        await peer.request()

    async with serve(close_on_request) as server, ConnectionPool() as pool:
        if reuse:
            await fetch(pool, server)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await fetch(pool, server)
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-A: 1",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1",
        b"HTTP/1.1 200 OK\r\nContent-",
    ],
    ids=["length", "chunk data", "chunk end", "trailers", "chunk size", "head"],
)
async def test_closing_mid_answer(answer: bytes) -> None:
    async def answer_partly(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)

    async with serve(answer_partly) as server, ConnectionPool() as pool:
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
            await fetch(pool, server)
        assert "idle=0" in repr(pool)


async def test_a_reset_connection_is_a_read_error() -> None:
    async def reset(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
        peer.reset()

    async with serve(reset) as server, ConnectionPool() as pool:
        with pytest.raises(httpx.ReadError, match="broke"):
            await fetch(pool, server)


async def test_a_reset_ends_a_body_without_length_as_an_error() -> None:
    async def reset(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nso far")
        peer.reset()

    async with serve(reset) as server, ConnectionPool() as pool:
        with pytest.raises(httpx.ReadError):
            await fetch(pool, server)


async def silent(peer: Peer) -> None:
    """Read each request and answer only once the test releases the server."""
    while True:
        await peer.request()
        await peer.server.release.wait()
        await peer.send(OK)


@VIRTUAL
async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async with serve(silent) as server, ConnectionPool() as pool:
        started = anyio.current_time()
        with pytest.raises(httpx.ReadTimeout):
            await fetch(pool, server, timeout={"read": 30.0})
        assert anyio.current_time() - started >= 30.0
        assert "idle=0" in repr(pool)


@VIRTUAL
async def test_a_body_that_stops_is_a_read_timeout() -> None:
    async def stall(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
        await peer.until_eof()

    async with serve(stall) as server, ConnectionPool() as pool:
        response = await pool.handle_async_request(request(server, timeout={"read": 30.0}))
        with pytest.raises(httpx.ReadTimeout):
            await response.aread()
        assert "idle=0" in repr(pool)
        await ended(server)


@VIRTUAL
async def test_a_server_that_reads_nothing_is_a_write_timeout() -> None:
    async def deaf(peer: Peer) -> None:
        await peer.server.release.wait()

    async with serve(deaf) as server, ConnectionPool() as pool:
        with pytest.raises(httpx.WriteTimeout):
            await fetch(
                pool, server, method="POST", content=b"x" * (64 << 20), timeout={"write": 5}
            )


@VIRTUAL
async def test_a_full_pool_is_a_pool_timeout_and_hands_slots_over() -> None:
    async with (
        serve(silent) as server,
        ConnectionPool(max_connections=1) as pool,
        anyio.create_task_group() as tg,
    ):
        results: list[bytes] = []

        async def hold_then_read() -> None:
            results.append((await fetch(pool, server)).content)

        tg.start_soon(hold_then_read)
        await server.arrived.wait()
        with pytest.raises(httpx.PoolTimeout):
            await fetch(pool, server, timeout={"pool": 5.0})
        tg.start_soon(hold_then_read)  # waits for the slot, then gets it handed over
        await anyio.sleep(1)
        server.release.set()
    assert results == [b"ok", b"ok"]
    assert server.connections == 1


async def test_cancellation_mid_request_closes_the_connection_and_frees_the_slot() -> None:
    async with serve(silent) as server, ConnectionPool(max_connections=1) as pool:
        with anyio.CancelScope() as scope:

            async def cancel_on_arrival() -> None:
                await server.arrived.wait()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_on_arrival)
                await fetch(pool, server)
        assert scope.cancelled_caught
        server.release.set()
        assert (await fetch(pool, server)).content == b"ok"
        await ended(server)  # the interrupted connection was closed, not reused
    assert server.connections == 2


async def test_cancellation_mid_body_closes_the_connection() -> None:
    async def stall(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
        await peer.until_eof()

    async with serve(stall) as server, ConnectionPool(max_connections=1) as pool:
        response = await pool.handle_async_request(request(server))
        with anyio.move_on_after(0.01) as scope:
            await response.aread()
        assert scope.cancelled_caught
        await response.aclose()
        assert "idle=0" in repr(pool)
        await ended(server)


async def test_closing_a_response_early_closes_its_connection() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000
    async with serve(answering(big, big)) as server, ConnectionPool() as pool:
        for _ in range(2):
            response = await pool.handle_async_request(request(server))
            async for piece in response.aiter_raw():
                assert piece
                break
            await response.aclose()
    assert server.connections == 2


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
async def test_a_large_body_streams_in_bounded_pieces(chunked: bool) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB
    if chunked:
        step = 100_000
        framed = b"".join(
            b"%x\r\n%b\r\n" % (len(body[i : i + step]), body[i : i + step])
            for i in range(0, len(body), step)
        )
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%b0\r\n\r\n" % framed
    else:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    async with serve(answering(answer, OK)) as server, ConnectionPool() as pool:
        response = await pool.handle_async_request(request(server))
        stream = response.stream
        assert isinstance(stream, H1Body)
        connection = stream._connection
        assert connection is not None
        for _ in range(10_000):  # the server sends it all; the client stops reading it in
            if connection._reading_paused:
                break
            await asyncio.sleep(0)
        assert connection._reading_paused
        assert len(connection._body) < 2 * HIGH_WATER
        pieces = [piece async for piece in response.aiter_raw()]
        await response.aclose()
        assert b"".join(pieces) == body
        assert len(pieces) > 1
        assert max(map(len, pieces)) <= PIECE
        assert (await fetch(pool, server)).content == b"ok"
    assert server.connections == 1


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class Parts(httpx.AsyncByteStream):
    """A request body that is neither bytes nor a ByteStream."""

    def __init__(self, *parts: bytes) -> None:
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part


async def test_request_bodies_from_other_streams() -> None:
    async with serve(answering(OK, OK, OK, OK, OK)) as server, ConnectionPool() as pool:
        await fetch(pool, server, method="POST", content=_chunks(b"he", b"", b"llo"))
        await fetch(
            pool, server, method="POST", stream=Parts(b"wor", b"ld"), headers={"Host": "h.test"}
        )
        await fetch(
            pool, server, method="POST", stream=Parts(b"a", b"b"), headers={"Content-Length": "2"}
        )
        await fetch(pool, server, method="PUT", stream=httpx.ByteStream(b""))
        await fetch(pool, server, method="PUT", stream=httpx.ByteStream(b"xyz"))
    first, second, third, fourth, fifth = server.requests
    assert b"transfer-encoding: chunked" in first.lower()
    assert first.endswith(b"\r\n\r\nhello")
    assert b"Transfer-Encoding: chunked" in second
    assert b"Host: h.test\r\n" in second
    assert second.count(b"Host:") == 1
    assert second.endswith(b"\r\n\r\nworld")
    assert b"\r\nContent-Length: 2\r\n" in third
    assert third.endswith(b"\r\n\r\nab")
    assert b"transfer-encoding" not in third.lower()
    assert b"Host: 127.0.0.1:" in fourth
    assert b"content-length" not in fourth.lower()
    assert fifth.endswith(b"\r\nContent-Length: 3\r\n\r\nxyz")
    assert server.connections == 1


async def test_a_chunked_byte_stream_is_sent_chunked() -> None:
    async with serve(answering(OK, OK)) as server, ConnectionPool() as pool:
        for body in (b"abc", b""):
            await fetch(
                pool,
                server,
                method="POST",
                stream=httpx.ByteStream(body),
                headers={"Transfer-Encoding": "chunked"},
            )
    assert server.requests[0].endswith(b"\r\n\r\nabc")
    assert server.requests[1].endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    "options",
    [
        {"stream": Parts(b"abc"), "headers": {"Content-Length": "2"}},
        {"stream": Parts(b"a"), "headers": {"Content-Length": "2"}},
        {"stream": httpx.ByteStream(b"abc"), "headers": {"Content-Length": "2"}},
        {"stream": httpx.ByteStream(b"abc"), "headers": {"Content-Length": "three"}},
        {"content": b"a", "headers": {"Transfer-Encoding": "gzip"}},
        {"content": b"a", "headers": {"X-Injected": "a\r\nX-Evil: 1"}},
        {"content": b"a", "headers": {"X-Bare": "a\rb"}},
        {"content": b"a", "method": "GET /other"},
        {"content": b"a", "method": "P\u00d6ST"},
    ],
    ids=[
        "longer than declared",
        "shorter than declared",
        "bytes longer than declared",
        "not a number",
        "unsupported coding",
        "CRLF in a header",
        "CR in a header",
        "space in method",
        "non-ASCII method",
    ],
)
async def test_requests_that_would_corrupt_the_stream(options: dict[str, Any]) -> None:
    async with serve(answering(OK)) as server, ConnectionPool() as pool:
        with pytest.raises(httpx.LocalProtocolError):
            await fetch(pool, server, **{"method": "POST", **options})
        assert "idle=0" in repr(pool)


async def test_a_sync_only_stream_is_refused() -> None:
    class SyncOnly(httpx.SyncByteStream):
        def __iter__(self) -> Any:
            yield b"x"

    async with serve(answering(OK)) as server, ConnectionPool() as pool:
        with pytest.raises(httpx.LocalProtocolError, match="async"):
            await fetch(pool, server, method="POST", stream=SyncOnly())


async def test_connecting_to_a_closed_port_is_a_connect_error() -> None:
    async with serve(answering(OK)) as server:
        url = server.url
    async with ConnectionPool() as pool:
        with pytest.raises(httpx.ConnectError, match=r"Could not connect to 127\.0\.0\.1:"):
            await pool.handle_async_request(httpx.Request("GET", url))
        for _ in range(2):  # the TLS context is made once, on first use
            with pytest.raises(httpx.ConnectError):
                await pool.handle_async_request(
                    httpx.Request("GET", url.replace("http:", "https:"))
                )


@VIRTUAL
async def test_connecting_too_slowly_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def never(*args: Any, **kwargs: Any) -> Any:
        await loop.create_future()

    monkeypatch.setattr(loop, "create_connection", never)
    async with ConnectionPool() as pool:
        with pytest.raises(httpx.ConnectTimeout):
            await pool.handle_async_request(
                httpx.Request("GET", "http://127.0.0.1:9/", extensions={"timeout": {"connect": 3}})
            )


async def test_closing_the_pool_closes_idle_connections() -> None:
    async with serve(answering(OK)) as server:
        pool = ConnectionPool()
        in_use = await pool.handle_async_request(request(server))
        await fetch(pool, server)  # on a second connection, left idle
        assert "idle=1" in repr(pool)
        await pool.aclose()
        assert "idle=0" in repr(pool)
        await ended(server)
        await in_use.aread()  # its connection closes once its response does
        await ended(server, 2)
        with pytest.raises(httpx.UnsupportedProtocol, match="closed"):
            await fetch(pool, server)
    assert server.connections == 2


async def test_a_connection_to_another_origin_is_not_reused() -> None:
    async with (
        serve(answering(OK, OK)) as one,
        serve(answering(OK, OK)) as two,
        ConnectionPool() as pool,
    ):
        await fetch(pool, one)
        await fetch(pool, two)
        await fetch(pool, one)
    # Each origin keeps its own idle connection: neither request went to the other server.
    assert (one.connections, two.connections) == (1, 1)
    assert (len(one.requests), len(two.requests)) == (2, 1)


async def test_a_write_to_a_connection_closed_meanwhile_is_skipped() -> None:
    """A streamed body whose connection ends midway: the answer (here: none) decides."""

    async def read_head_and_close(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        peer.server.arrived.set()

    async with serve(read_head_and_close) as server:
        connection = await open_connection(
            (b"http", b"127.0.0.1", int(server.url.split(":")[2].split("/")[0])),
            ssl_context=None,
            connect_timeout=None,
        )

        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            await server.arrived.wait()
            for _ in range(1000):
                if connection._eof:
                    break
                await asyncio.sleep(0)
            yield b"second"

        with pytest.raises(httpx.RemoteProtocolError):
            await connection.request(
                httpx.Request("POST", server.url, content=body()), lambda _: None
            )
        assert not connection.is_reusable()


async def test_slots_pass_on_a_slot_handed_to_a_cancelled_waiter() -> None:
    slots = _Slots(1)
    await slots.acquire(None)
    waiting = asyncio.ensure_future(slots.acquire(None))
    await asyncio.sleep(0)
    slots.release()  # hands the slot to the waiter ...
    waiting.cancel()  # ... which is cancelled before it runs: the slot must not be lost
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await slots.acquire(0)  # free again, at once
    with pytest.raises(httpx.PoolTimeout):
        await slots.acquire(0)


async def test_slots_forget_waiters_that_gave_up() -> None:
    slots = _Slots(1)
    await slots.acquire(None)
    cancelled = asyncio.ensure_future(slots.acquire(None))
    timed_out = asyncio.ensure_future(slots.acquire(None))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    slots._waiters[0].set_exception(httpx.PoolTimeout("late"))  # as its timer would
    slots.release()  # skips the failed waiter before it could leave the queue itself
    with pytest.raises(httpx.PoolTimeout):
        await timed_out
    assert not slots._waiters
    await slots.acquire(0)  # the slot is free, not lost to either


class FakeTransport(asyncio.Transport):
    """A transport with no socket: the test plays the network, byte by byte and event by event."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.reading = True
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abort(self) -> None:
        self.aborted = True


async def connected() -> tuple[H1Connection, FakeTransport]:
    connection = H1Connection((b"http", b"h.test", 80), asyncio.get_running_loop())
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never came true")


async def test_a_blocked_write_waits_for_the_transport_to_drain() -> None:
    connection, transport = await connected()
    assert connection._poll is None  # no socket: no readability check
    connection.pause_writing()
    sending = asyncio.ensure_future(
        connection.request(httpx.Request("POST", "http://h.test/", content=b"{}"), lambda _: None)
    )
    await until(lambda: connection._drain is not None)
    connection.resume_writing()
    await until(lambda: connection._waiter is not None)  # now waiting for the answer
    connection.data_received(OK)
    response = await sending
    assert (response.status_code, await response.aread()) == (200, b"ok")
    assert transport.written.endswith(b"Content-Length: 2\r\n\r\n{}")


async def test_a_connection_lost_while_writing_is_a_read_error() -> None:
    connection, transport = await connected()
    connection.pause_writing()
    sending = asyncio.ensure_future(
        connection.request(
            httpx.Request("POST", "http://h.test/", content=b"{}", extensions={"timeout": {}}),
            lambda _: None,
        )
    )
    await until(lambda: connection._drain is not None)
    connection.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(httpx.ReadError, match="reset by peer"):
        await sending
    assert transport.aborted
    assert not connection.is_reusable()


async def test_interim_answers_are_parsed_as_they_come_not_buffered() -> None:
    connection, transport = await connected()
    sending = asyncio.ensure_future(
        connection.request(httpx.Request("GET", "http://h.test/"), lambda _: None)
    )
    await until(lambda: connection._waiter is not None)
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: " + b"x" * 20_000 + b"\r\n\r\n"
    connection.data_received(interim * 14)  # 280 kB, past the high-water mark
    assert transport.reading
    assert not connection._body
    connection.data_received(OK)
    assert (await sending).status_code == 200


async def test_reading_resumes_for_the_next_answer_after_a_large_one() -> None:
    connection, transport = await connected()
    body = b"x" * (HIGH_WATER + 1)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    for answer, paused in ((big, True), (OK, False)):
        sending = asyncio.ensure_future(
            connection.request(httpx.Request("GET", "http://h.test/"), lambda _: None)
        )
        await until(lambda: connection._waiter is not None)
        assert transport.reading  # the wait for this answer reads again
        connection.data_received(answer)
        assert transport.reading is not paused
        response = await sending
        assert len(await response.aread()) == len(answer) - answer.index(b"\r\n\r\n") - 4


async def test_an_unsolicited_answer_spends_the_connection() -> None:
    connection, _ = await connected()
    response = asyncio.ensure_future(
        connection.request(httpx.Request("GET", "http://h.test/"), lambda _: None)
    )
    await until(lambda: connection._waiter is not None)
    connection.data_received(OK)
    assert await (await response).aread() == b"ok"
    assert connection.is_reusable()
    connection.data_received(OK)  # nobody asked
    assert not connection.is_reusable()


async def test_an_unsolicited_answer_over_the_network_is_not_reused() -> None:
    async def answer_then_more(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra")
        await peer.request()
        await peer.send(OK)
        await peer.until_eof()

    async with serve(answer_then_more) as server, ConnectionPool() as pool:
        response = await pool.handle_async_request(request(server))
        await response.aread()
        stream = response.stream
        assert isinstance(stream, H1Body)
        for _ in range(100):  # let the unasked-for answer arrive
            await asyncio.sleep(0)
        assert (await fetch(pool, server)).content == b"ok"
    assert server.connections == 2


async def test_an_answer_to_head_has_no_body_and_is_not_reused() -> None:
    """llhttp cannot be told that a HEAD answer has no body: its connection is not reused."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    async with serve(answering(answer, close=False)) as server, ConnectionPool() as pool:
        for _ in range(2):
            response = await fetch(pool, server, method="HEAD")
            assert (response.status_code, response.content) == (200, b"")
            assert response.headers["content-length"] == "10"
    assert server.connections == 2


async def test_a_connection_never_made_closes_quietly() -> None:
    connection = H1Connection((b"http", b"h.test", 80), asyncio.get_running_loop())
    connection.pause_writing()
    connection.resume_writing()  # with no write waiting, nothing to wake
    connection.close()
    assert not connection.is_reusable()


async def test_a_late_timer_leaves_a_settled_wait_alone() -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    _expire(done, httpx.ReadTimeout, "late")
    _time_out(done)
    assert done.result() is None


async def test_https_round_trip() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer, server)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            for _ in range(2):
                await peer.request()
                await peer.send(OK)
            await peer.until_eof()
        writer.close()

    server = Server()
    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with ConnectionPool(verify=client_context) as pool:
            for _ in range(2):
                response = await pool.handle_async_request(
                    httpx.Request("POST", f"https://127.0.0.1:{port}/x", content=b"{}")
                )
                assert await response.aread() == b"ok"
        assert len(server.requests) == 2
    finally:
        listener.close()
        await listener.wait_closed()


async def test_respx_mocking_still_sees_the_requests() -> None:
    async with serve(answering(OK)) as server, ConnectionPool() as pool:
        with respx.mock(assert_all_called=True) as mock:
            mock.get(server.url).respond(200, text="mocked")
            assert (await fetch(pool, server)).content == b"mocked"
        response = await fetch(pool, server)  # unpatched again: the asyncio path
        assert response.content == b"ok"
        assert isinstance(response.stream, H1Body)
    assert server.connections == 1


async def test_the_client_posts_through_the_asyncio_path() -> None:
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    async with emulator.serve() as served:
        client = AsyncHookClient.from_url(hook.url_for(served.url))
        async with client:
            for text in ("one", "two", "three"):
                await client.post_message(text)
            pool = client._transport._inner
            assert isinstance(pool, ConnectionPool)
            assert pool._asyncio is True
            assert pool.idle_connections == 1  # one connection, kept alive, reused
            assert not pool._idle
    assert_posted(emulator, hook, ["one", "two", "three"])
