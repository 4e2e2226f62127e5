"""HTTP/1.1 keep-alive connections on asyncio protocols: the default pool's asyncio path.

One request at a time per connection. The request leaves in one write; the answer is parsed
from the protocol's own buffer, strictly and within fixed bounds, and its body is handed out
as it arrives. No stream wrappers and no general state machine: a request costs a handful of
calls, which is what lets the pool keep up with aiohttp on asyncio.
"""

from __future__ import annotations

import asyncio
import re
import select
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final

import httpx

from ._transport import WRITE_EXTENSION

if TYPE_CHECKING:
    import ssl

__all__ = ["H1Body", "H1Connection", "Origin", "open_connection"]

#: (scheme, host, port): a connection only serves requests to the origin it was opened to.
Origin = tuple[bytes, bytes, int]

MAX_HEAD: Final = 64 * 1024  # bytes in a response head, and in a chunked body's trailers
MAX_FIELDS: Final = 100  # header lines in a response head, and trailer lines
MAX_INTERIM: Final = 16  # 1xx answers before the final one
MAX_CHUNK_LINE: Final = 4096  # a chunk-size line, extensions included
PIECE: Final = 64 * 1024  # the largest body piece handed out at once
HIGH_WATER: Final = 256 * 1024  # unread bytes at which the socket stops being read
LOW_WATER: Final = 64 * 1024  # ... and below which it is read again

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# Field values exclude control characters (CR and LF included), so no line can smuggle another.
_TEXT = rb"[^\x00-\x08\x0a-\x1f\x7f]*"
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: (" + _TEXT + rb"))?")
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _TEXT + rb")")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;" + _TEXT + rb")?")
_METHOD = re.compile(_TOKEN.decode("ascii"), re.ASCII)
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Where the parser is in the answer's body.
_DONE, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _UNTIL_CLOSE = range(6)

_NO_ANSWER = "Server disconnected without sending a response."


def _expire(waiter: asyncio.Future[None], error: type[httpx.TimeoutException], text: str) -> None:
    # A timeout fails the one wait it guards: cancelling the task instead would be
    # indistinguishable from the caller's own cancellation.
    if not waiter.done():
        waiter.set_exception(error(text))


def parse_head(head: bytes) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Split a response head (without its blank line) into status, version, reason, headers.

    Raises:
        httpx.RemoteProtocolError: Any deviation from the grammar, obs-fold included.
    """
    lines = head.split(b"\r\n")
    if len(lines) > MAX_FIELDS + 1:
        raise httpx.RemoteProtocolError("The response has too many header lines.")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise httpx.RemoteProtocolError("The response's status line is malformed.")
    headers = []
    for line in lines[1:]:
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            raise httpx.RemoteProtocolError("A response header line is malformed.")
        headers.append((field[1], field[2].rstrip(b" \t")))
    version = b"HTTP/1.1" if status[1] == b"1" else b"HTTP/1.0"
    return int(status[2]), version, status[3] or b"", headers


def _request_head(request: httpx.Request) -> tuple[bytes, int, bool, bytes | None]:
    """The request's head, then how its body goes out.

    Returns:
        The head (blank line included); the declared length (-1: none, or chunked); whether
        the body is chunked; and the whole body when it is already in memory (a ByteStream).

    Raises:
        httpx.LocalProtocolError: A method, header or framing that would corrupt the stream.
    """
    method = request.method
    if method not in _KNOWN_METHODS and not _METHOD.fullmatch(method):
        raise httpx.LocalProtocolError("The request method is not a valid token.")
    url = request.url
    parts = [method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    length: bytes | None = None
    chunked = host = False
    lines = 2  # the request line and the blank one
    for name, value in request.headers.raw:
        parts += (name, b": ", value, b"\r\n")
        lines += 1
        lower = name.lower()
        if lower == b"content-length":
            length = value
        elif lower == b"transfer-encoding":
            if value.lower() != b"chunked":
                raise httpx.LocalProtocolError("Only chunked request bodies are supported.")
            chunked = True
        elif lower == b"host":
            host = True
    if not host:
        parts += (b"Host: ", url.netloc, b"\r\n")
        lines += 1
    stream = request.stream
    body = b"".join(stream) if isinstance(stream, httpx.ByteStream) else None
    if length is None and not chunked:
        if body is None:
            chunked = True  # a length unknown until the stream ends
            parts.append(b"Transfer-Encoding: chunked\r\n")
            lines += 1
        elif body:
            length = b"%d" % len(body)
            parts += (b"Content-Length: ", length, b"\r\n")
            lines += 1
    parts.append(b"\r\n")
    head = b"".join(parts)
    # Every line ends in CRLF and nothing else does: no header can start a line of its own.
    if not head.count(b"\n") == head.count(b"\r") == lines:
        raise httpx.LocalProtocolError("A request header holds a line break.")
    declared = -1
    if length is not None and not chunked:
        if not length.isdigit():
            raise httpx.LocalProtocolError("The request's Content-Length is not a number.")
        declared = int(length)
        if body is not None and declared != len(body):
            raise httpx.LocalProtocolError("The request body's length differs from its header.")
    return head, declared, chunked, body


class H1Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the socket's protocol, and the request/answer cycle on it.

    Args:
        origin: What it is opened to.
        loop: The running loop, for futures and timers.
    """

    __slots__ = (
        "_body_left",
        "_buffer",
        "_drain",
        "_eof",
        "_error",
        "_keep_alive",
        "_loop",
        "_mode",
        "_poll",
        "_read_timeout",
        "_reading_paused",
        "_transport",
        "_waiter",
        "_writing_paused",
        "expires_at",
        "origin",
    )

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.expires_at = float("inf")
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._poll: Callable[[], bool] | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._read_timeout: float | None = None
        self._writing_paused = False
        self._reading_paused = False
        self._eof = False  # nothing more will arrive
        self._error: Exception | None = None  # why the connection broke, if it did not end
        self._mode = _DONE
        self._body_left = 0
        self._keep_alive = False

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # A close that reached the socket since the loop last looked is only seen by asking
        # the socket; reusing the connection would lose the request (httpcore asks too).
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            self._poll = lambda: bool(poller.poll(0))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()  # type: ignore[union-attr]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._ended()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._error is None and not self._eof:
            self._error = exc
        self._ended()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _ended(self) -> None:
        self._eof = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # State the pool asks about

    def is_reusable(self) -> bool:
        """Whether a new request may go out on this connection now.

        Its last answer must be complete and keep-alive, nothing unasked-for may have arrived,
        and the server must not have closed it, even if the loop has not noticed yet.
        """
        return (
            self._mode == _DONE
            and self._keep_alive
            and not self._eof
            and not self._buffer
            and self.expires_at > self._loop.time()
            and not (self._poll is not None and self._poll())
        )

    def close(self) -> None:
        """Close the connection at once; whatever it was doing is abandoned."""
        self._keep_alive = False
        self._eof = True
        transport = self._transport
        if transport is not None:
            transport.abort()

    # The request

    async def request(
        self, request: httpx.Request, on_close: Callable[[H1Connection], None]
    ) -> httpx.Response:
        """Send ``request`` and read the answer's head; the body follows through its stream.

        Args:
            request: What to send; its ``timeout`` extension bounds each wait.
            on_close: Called with this connection once the response is closed, to take it
                back (if :meth:`is_reusable`) or close it.

        Raises:
            httpx.TransportError: The request could not be sent or the answer was broken; the
                connection is closed. Cancellation closes it too and propagates unchanged.
        """
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        self._read_timeout = timeouts.get("read")
        self.expires_at = float("inf")  # a slow answer does not age the connection
        try:
            on_write = request.extensions.get(WRITE_EXTENSION)
            if on_write is not None:
                on_write()  # the write-start signal: bytes may reach the network from here
            await self._send(request, timeouts.get("write"))
            status, version, reason, headers = await self._read_head(request.method == "HEAD")
        except BaseException:
            self.close()
            raise
        return httpx.Response(
            status_code=status,
            headers=headers,
            stream=H1Body(self, self._complete_body(), on_close),
            extensions={"http_version": version, "reason_phrase": reason},
        )

    async def _send(self, request: httpx.Request, write_timeout: float | None) -> None:
        head, declared, chunked, body = _request_head(request)
        if body is not None:
            if chunked:
                body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
            await self._write(head + body, write_timeout)
            return
        stream = request.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise httpx.LocalProtocolError("The request body is not an async stream.")
        await self._write(head, write_timeout)
        sent = 0
        async for chunk in stream:
            sent += len(chunk)
            if 0 <= declared < sent:
                raise httpx.LocalProtocolError("The request body is longer than its header says.")
            if chunk:
                data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
                await self._write(data, write_timeout)
        if chunked:
            await self._write(b"0\r\n\r\n", write_timeout)
        elif sent != declared:
            raise httpx.LocalProtocolError("The request body is shorter than its header says.")

    async def _write(self, data: bytes, write_timeout: float | None) -> None:
        if self._eof:
            # Closed while idle, or while an earlier part was sent: the answer, if any, decides.
            return
        self._transport.write(data)  # type: ignore[union-attr]
        if not self._writing_paused:
            return
        drain = self._drain = self._loop.create_future()
        text = "The request could not be written within the write timeout."
        try:
            await self._within(drain, write_timeout, httpx.WriteTimeout, text)
        finally:
            self._drain = None

    async def _within(
        self,
        future: asyncio.Future[None],
        seconds: float | None,
        error: type[httpx.TimeoutException],
        text: str,
    ) -> None:
        """Await ``future``; a timer fails it with ``error(text)`` if ``seconds`` pass first."""
        timer = None
        if seconds is not None:
            timer = self._loop.call_later(seconds, _expire, future, error, text)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()

    # The answer

    async def _more(self, message: str) -> None:
        """Wait, at most the read timeout, for more bytes; fail if none can come."""
        if self._eof:
            if self._error is not None:
                raise httpx.ReadError(f"The connection broke: {self._error}")
            raise httpx.RemoteProtocolError(message)
        if self._reading_paused:
            self._resume_reading()
        waiter = self._waiter = self._loop.create_future()
        text = "No response arrived within the read timeout."
        try:
            await self._within(waiter, self._read_timeout, httpx.ReadTimeout, text)
        finally:
            self._waiter = None

    def _resume_reading(self) -> None:
        self._reading_paused = False
        self._transport.resume_reading()  # type: ignore[union-attr]

    async def _read_head(self, head_request: bool) -> tuple[int, bytes, bytes, list[Any]]:
        buffer = self._buffer
        for _ in range(MAX_INTERIM + 1):
            start = 0
            while (end := buffer.find(b"\r\n\r\n", start)) < 0:
                if len(buffer) > MAX_HEAD:
                    raise httpx.RemoteProtocolError("The response head is too large.")
                start = max(len(buffer) - 3, 0)
                await self._more(
                    "Server disconnected in the middle of the response head."
                    if buffer
                    else _NO_ANSWER
                )
            if end > MAX_HEAD:
                raise httpx.RemoteProtocolError("The response head is too large.")
            status, version, reason, headers = parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
            if status >= 200:
                self._frame(status, version, headers, head_request)
                return status, version, reason, headers
            if status == 101:
                raise httpx.RemoteProtocolError("The server switched protocols unasked.")
        raise httpx.RemoteProtocolError("The server sent too many interim (1xx) responses.")

    def _frame(
        self, status: int, version: bytes, headers: list[tuple[bytes, bytes]], head_request: bool
    ) -> None:
        """Learn from the headers how the body is delimited and whether the connection stays."""
        length = -1
        chunked = close = keep = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    raise httpx.RemoteProtocolError("The response's Content-Length is malformed.")
                if 0 <= length != int(value):
                    raise httpx.RemoteProtocolError("The response has conflicting Content-Lengths.")
                length = int(value)
            elif lower == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise httpx.RemoteProtocolError(
                        "The response's Transfer-Encoding is unsupported."
                    )
                chunked = True
            elif lower == b"connection":
                tokens = {token.strip(b" \t") for token in value.lower().split(b",")}
                close = close or b"close" in tokens
                keep = keep or b"keep-alive" in tokens
        self._keep_alive = not close and (keep or version == b"HTTP/1.1")
        if head_request or status in (204, 304):
            self._mode = _DONE
        elif chunked:
            self._mode = _CHUNK_SIZE
            if length >= 0:
                self._keep_alive = False  # both framings at once: trust neither for the next
        elif length >= 0:
            self._mode = _LENGTH if length else _DONE
            self._body_left = length
        else:
            self._mode = _UNTIL_CLOSE
            self._keep_alive = False

    def _complete_body(self) -> bytes | None:
        """The whole body, if it is already here (the usual small answer); else None."""
        if self._mode == _DONE:
            return b""
        buffer = self._buffer
        left = self._body_left
        if self._mode != _LENGTH or len(buffer) < left:
            return None
        self._mode = _DONE
        if len(buffer) == left:
            body = bytes(buffer)
            buffer.clear()
        else:
            body = bytes(buffer[:left])
            del buffer[:left]
        return body

    def _take(self, most: int) -> bytes:
        buffer = self._buffer
        size = min(most, len(buffer), PIECE)
        piece = bytes(buffer[:size])
        del buffer[:size]
        if self._reading_paused and len(buffer) < LOW_WATER:
            self._resume_reading()
        return piece

    async def read_body(self) -> bytes:
        """The next piece of the answer's body, or ``b""`` once it is complete.

        Raises:
            httpx.TransportError: A broken body; the connection is closed (so on cancellation).
        """
        try:
            return await self._read_body()
        except BaseException:
            self.close()
            raise

    async def _read_body(self) -> bytes:
        buffer = self._buffer
        early = "Server disconnected before the response body was complete."
        while True:
            mode = self._mode
            if mode == _DONE:
                return b""
            if mode in (_LENGTH, _CHUNK_DATA):
                if not buffer:
                    await self._more(early)
                    continue
                piece = self._take(self._body_left)
                self._body_left -= len(piece)
                if not self._body_left:
                    self._mode = _DONE if mode == _LENGTH else _CHUNK_END
                return piece
            if mode == _UNTIL_CLOSE:
                if buffer:
                    return self._take(len(buffer))
                if self._eof and self._error is None:
                    self._mode = _DONE
                    return b""
                await self._more(early)
            elif mode == _CHUNK_END:
                if len(buffer) < 2:
                    await self._more(early)
                    continue
                if buffer[:2] != b"\r\n":
                    raise httpx.RemoteProtocolError("A response body chunk is malformed.")
                del buffer[:2]
                self._mode = _CHUNK_SIZE
            else:
                eol = buffer.find(b"\r\n", 0, MAX_CHUNK_LINE)
                if eol < 0:
                    if len(buffer) >= MAX_CHUNK_LINE:
                        raise httpx.RemoteProtocolError("A response chunk-size line is too long.")
                    await self._more(early)
                    continue
                size = _CHUNK_LINE.fullmatch(buffer, 0, eol)
                if size is None:
                    raise httpx.RemoteProtocolError("A response chunk-size line is malformed.")
                self._body_left = int(size[1], 16)  # before the del: the match views buffer
                del buffer[: eol + 2]
                if not self._body_left:
                    await self._skip_trailers(early)
                    self._mode = _DONE
                    return b""
                self._mode = _CHUNK_DATA

    async def _skip_trailers(self, early: str) -> None:
        buffer = self._buffer
        seen = 0
        for _ in range(MAX_FIELDS + 1):
            while (eol := buffer.find(b"\r\n")) < 0:
                if seen + len(buffer) > MAX_HEAD:
                    raise httpx.RemoteProtocolError("The response's trailers are too large.")
                await self._more(early)
            if not eol:
                del buffer[:2]
                return
            seen += eol + 2
            if seen > MAX_HEAD:
                raise httpx.RemoteProtocolError("The response's trailers are too large.")
            if _FIELD_LINE.fullmatch(buffer, 0, eol) is None:
                raise httpx.RemoteProtocolError("A response trailer line is malformed.")
            del buffer[: eol + 2]
        raise httpx.RemoteProtocolError("The response has too many trailer lines.")


class H1Body(httpx.AsyncByteStream):
    """An answer's body: hands out its pieces, then the connection when closed.

    A body that arrived with its head is handed out without waiting again.
    """

    __slots__ = ("_connection", "_first", "_on_close")

    def __init__(
        self,
        connection: H1Connection,
        complete: bytes | None,
        on_close: Callable[[H1Connection], None],
    ) -> None:
        self._connection: H1Connection | None = connection
        self._first = complete  # None: read from the connection; b"": nothing more
        self._on_close = on_close

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = b""
            if first:
                return first
            raise StopAsyncIteration
        connection = self._connection
        piece = b"" if connection is None else await connection.read_body()
        if not piece:
            self._first = b""
            raise StopAsyncIteration
        return piece

    async def aclose(self) -> None:
        """Give the connection back (to be reused only if the body was read to its end)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._on_close(connection)


async def open_connection(
    origin: Origin, *, ssl_context: ssl.SSLContext | None, connect_timeout: float | None
) -> H1Connection:
    """Open a connection to ``origin`` (TLS when ``ssl_context`` is given).

    Raises:
        httpx.ConnectTimeout: Not connected (TLS handshake included) within ``connect_timeout``.
        httpx.ConnectError: Refused, unreachable, unresolvable or a failed handshake.
    """
    _, raw_host, port = origin
    host = raw_host.decode("ascii")
    loop = asyncio.get_running_loop()
    connection = H1Connection(origin, loop)
    deadline = asyncio.timeout(connect_timeout)
    try:
        async with deadline:
            await loop.create_connection(
                lambda: connection,
                host,
                port,
                ssl=ssl_context,
                server_hostname=host if ssl_context is not None else None,
            )
    except OSError as exc:
        if deadline.expired():
            raise httpx.ConnectTimeout(f"Connecting to {host}:{port} timed out.") from None
        raise httpx.ConnectError(f"Could not connect to {host}:{port}: {exc}") from exc
    return connection
