"""HTTP/1.1 keep-alive connections on asyncio protocols: the default pool's asyncio path.

One request at a time per connection. The request leaves in one write; the answer is parsed by
llhttp (Node's HTTP parser, through ``httptools``) as its bytes arrive, inside bounds of ours
that llhttp does not keep (head size, header count, bytes without progress), and its body is
handed out as it arrives. What is ours here is the glue: the protocol callbacks, the waits and
timeouts, flow control and the decision whether a connection may be reused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
import select
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import httptools
import httpx

from .._quota import RateLimit, rate_limit_of
from ._transport import (
    ATTEMPT_OVER,
    FIELDS_EXTENSION,
    RATE_LIMIT_EXTENSION,
    WRITE_EXTENSION,
    reuse_within,
)

if TYPE_CHECKING:
    import ssl

__all__ = ["HAPPY_EYEBALLS_DELAY", "H1Body", "H1Connection", "Origin", "open_connection"]

#: (scheme, host, port): a connection only serves requests to the origin it was opened to.
Origin = tuple[bytes, bytes, int]

MAX_HEAD: Final = 64 * 1024  # bytes in a response head; bytes fed without any progress
MAX_FIELDS: Final = 100  # header lines in a response head, and trailer lines
MAX_INTERIM: Final = 16  # 1xx answers before the final one
MAX_LENGTH_DIGITS: Final = 18  # a Content-Length llhttp would take but no body can reach
PIECE: Final = 64 * 1024  # the largest body piece handed out at once
READ_SIZE: Final = 64 * 1024  # the connection's receive buffer: bytes taken per read at most
HIGH_WATER: Final = 256 * 1024  # unread body bytes at which the socket stops being read
LOW_WATER: Final = 64 * 1024  # ... and below which it is read again
#: Seconds before the next address of a name is tried while the previous one still connects
#: (RFC 8305 recommends 0.25 s).
HAPPY_EYEBALLS_DELAY: Final = 0.25

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_METHOD = re.compile(_TOKEN.decode("ascii"), re.ASCII)
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# llhttp takes any byte but CR and LF in a reason phrase; a control character there is refused.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_CONTENT_LENGTH: Final = 1
_TRANSFER_ENCODING: Final = 2
_KEEP_ALIVE: Final = 3
#: The header names the connection reads (lower case): a kind above, or for the rate-limit
#: headers the rest of the name, as :func:`~hookapi._quota.rate_limit_of` takes them.
_NAMES: Final[dict[bytes, int | bytes]] = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"keep-alive": _KEEP_ALIVE,
    **{
        b"x-rate-limit-" + rest: rest
        for rest in (b"total-per-hour", b"total-per-day", b"used", b"remaining")
    },
}
#: _NAMES, and the names most servers send, as they are usually spelled: most lines are told
#: apart by one lookup, without lowering the name first (``None``: a name nothing reads).
_SPELLED: Final[dict[bytes, int | bytes | None]] = {
    **_NAMES,
    **{name.title(): kind for name, kind in _NAMES.items()},
    **{
        name: None
        for spelling in (b"server", b"date", b"content-type", b"connection", b"cache-control")
        for name in (spelling, spelling.title())
    },
}

_INF: Final = math.inf
_OTHER: Final = object()  # a name _SPELLED does not hold
_NO_ANSWER = "Server disconnected without sending a response."
_MID_HEAD = "Server disconnected in the middle of the response head."
_EARLY = "Server disconnected before the response body was complete."


class _HeadOnly(Exception):
    """Raised from a callback to stop llhttp after the head of an answer that has no body."""


class _Stray(Exception):
    """Raised from a callback when bytes follow a complete answer: the connection is spent."""


def _expire(waiter: asyncio.Future[None], error: type[httpx.TimeoutException], text: str) -> None:
    # A timeout fails the one wait it guards: cancelling the task instead would be
    # indistinguishable from the caller's own cancellation.
    if not waiter.done():
        waiter.set_exception(error(text))


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
    # The request line (the real path) joins the fields only in the return expression, so
    # that no local of a frame that may raise holds it.
    parts: list[bytes] = []
    length: bytes | None = None
    chunked = host = False
    lines = 1  # the blank line
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
        parts += (b"Host: ", request.url.netloc, b"\r\n")
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
    fields = b"".join(parts)
    # Every line ends in CRLF and nothing else does: no header can start a line of its own.
    if not fields.count(b"\n") == fields.count(b"\r") == lines:
        raise httpx.LocalProtocolError("A request header holds a line break.")
    declared = -1
    if length is not None and not chunked:
        if not length.isdigit():
            raise httpx.LocalProtocolError("The request's Content-Length is not a number.")
        declared = int(length)
        if body is not None and declared != len(body):
            raise httpx.LocalProtocolError("The request body's length differs from its header.")
    return _request_line(request) + fields, declared, chunked, body


def _request_line(request: httpx.Request) -> bytes:
    # httpx percent-encodes the path: it holds no CR, LF or space.
    return b"%b %b HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)


class H1Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection: the socket's protocol, and the request/answer cycle on it.

    The protocol is also the llhttp parser's callback object: ``on_*`` methods are called by
    ``httptools`` from inside :meth:`data_received`. The socket is read into one buffer of the
    connection's own (a buffered protocol): a plain protocol would have asyncio allocate a
    fresh 256 KiB ``bytes`` for every read, for answers of a few hundred bytes.

    Args:
        origin: What it is opened to.
        loop: The running loop, for futures and timers.
    """

    __slots__ = (
        "_active",
        "_body",
        "_buffer",
        "_complete",
        "_drain",
        "_ends",
        "_eof",
        "_error",
        "_framed",
        "_head_bytes",
        "_head_done",
        "_head_only",
        "_headers",
        "_interim",
        "_keep_alive",
        "_limits",
        "_loop",
        "_lost",
        "_one_timer",
        "_parser",
        "_poll",
        "_progress",
        "_read_timeout",
        "_reading_paused",
        "_reason",
        "_received",
        "_stalled",
        "_stray",
        "_te_seen",
        "_timer",
        "_trailers",
        "_transport",
        "_waiter",
        "_writing_paused",
        "expires_at",
        "origin",
        "reuse_within",
    )

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.expires_at = float("inf")
        self.reuse_within = math.inf  # idle seconds the server's Keep-Alive header allows
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._poll: Callable[[], bool] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._read_timeout: float | None = None
        self._ends = math.inf  # the loop time by which the current request must be done
        self._writing_paused = False
        self._reading_paused = False
        self._eof = False  # nothing more will arrive
        self._lost: Exception | None = None  # why the socket broke, if it did not just end
        self._stray = False  # bytes came that no request asked for
        self._keep_alive = False
        self._active = False  # a request is out and its answer not yet complete
        self._complete = True  # the last answer was read to its end (by llhttp)
        self._parser: httptools.HttpResponseParser | None = None  # made for the first request
        self._buffer: memoryview | None = None  # what the socket is read into, once connected
        # The fast path (post) keeps one timer per connection for the requests' ends, moved
        # only when a request must end sooner than it fires, instead of one per wait.
        self._one_timer = False
        self._timer: asyncio.TimerHandle | None = None
        self._body = bytearray()  # body bytes parsed and not yet handed out
        self._reset_answer(head_only=False)

    def _reset_answer(self, *, head_only: bool) -> None:
        """Forget the last answer (llhttp itself is ready for the next once one completes)."""
        self._head_only = head_only
        self._error: Exception | None = None  # the answer is broken: raised to its reader
        self._body.clear()  # never handed out itself (only copies of it), so it is reused
        self._received = 0
        self._interim = 0
        self._stalled = 0  # bytes fed since a callback last showed progress
        self._progress = False
        self._new_head()

    def _new_head(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._limits: dict[bytes, bytes] = {}  # X-Rate-Limit-* values, by the rest of the name
        self._reason = b""
        self._head_bytes = 0
        self._head_done = False
        self._framed = False  # a Content-Length or Transfer-Encoding says where the body ends
        self._te_seen = False
        self._trailers = 0

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

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = memoryview(bytearray(READ_SIZE))
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self._buffer is not None
        # llhttp reads the view in place; every callback copies what it keeps.
        self.data_received(self._buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        parser = self._parser
        if not self._active or parser is None or self._error is not None:
            # Unasked for (or after a broken answer): never parsed, and never reused.
            self._stray = True
            self._wake()
            return
        self._received += len(data)
        self._progress = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc.__context__)
        except httptools.HttpParserError as exc:
            self._parse_failed(f"The response is malformed ({exc}).")
        else:
            if self._progress:
                self._stalled = 0
            else:
                self._stalled += len(data)
                if self._stalled > MAX_HEAD:
                    self._parse_failed("The response sent too much without a complete field.")
        if len(self._body) > HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def _callback_failed(self, reason: BaseException | None) -> None:
        if isinstance(reason, _HeadOnly):
            self._answer_complete(keep_alive=False)  # llhttp cannot be told: not reusable
        elif isinstance(reason, _Stray):
            self._stray = True
        elif isinstance(reason, httpx.RemoteProtocolError):
            self._parse_failed(str(reason))
        else:  # pragma: no cover  (every callback raises one of the above)
            self._parse_failed(f"The response could not be parsed ({reason!r}).")

    def _parse_failed(self, text: str) -> None:
        if self._complete:
            self._stray = True  # after a complete answer: the answer stands, the socket is spent
            return
        self._error = httpx.RemoteProtocolError(text)
        self._keep_alive = False

    def eof_received(self) -> bool:
        self._ended()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._lost is None and not self._eof:
            self._lost = exc
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
        if (
            self._active
            and self._head_done
            and not self._framed
            and self._lost is None
            and self._error is None
        ):
            self._answer_complete(keep_alive=False)  # a body without length ends with the close
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # llhttp callbacks (through httptools), called from inside data_received

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Stray
        self._new_head()

    def on_status(self, reason: bytes) -> None:
        self._head_bytes += len(reason)
        if _CONTROL.search(reason):
            raise httpx.RemoteProtocolError("The response's reason phrase holds a control byte.")
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        size = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
        if self._head_done:  # a trailer: bounded, then dropped
            self._trailers += 1
            if self._trailers > MAX_FIELDS or size > MAX_HEAD:
                raise httpx.RemoteProtocolError("The response's trailers are too large.")
            return
        headers = self._headers
        # As llhttp reports it, trailing whitespace kept: stripped when a response is built.
        headers.append((name, value))
        if len(headers) > MAX_FIELDS or size > MAX_HEAD:
            raise httpx.RemoteProtocolError("The response head is too large.")
        # One lookup tells the few names that matter from the rest, mostly without lowering.
        kind = _SPELLED.get(name, _OTHER)
        if kind is None:
            return
        if kind is _OTHER:
            lower = name.lower()
            kind = _NAMES.get(lower)
            if kind is None:
                if lower.startswith(b"x-rate-limit-"):  # another one: the answer has a RateLimit
                    self._limits.setdefault(lower[13:], value.rstrip(b" \t"))
                return
        if type(kind) is bytes:
            # Picked out here, while llhttp reports the line: the quota reads these four on
            # every answer, and a second pass over the headers would cost as much again.
            self._limits.setdefault(kind, value.rstrip(b" \t"))
        elif kind == _CONTENT_LENGTH:
            self._framed = True
            if len(value.rstrip(b" \t")) > MAX_LENGTH_DIGITS:
                raise httpx.RemoteProtocolError("The response's Content-Length is too large.")
        elif kind == _TRANSFER_ENCODING:
            self._framed = True
            if self._te_seen or value.lower() != b"chunked":
                raise httpx.RemoteProtocolError("The response's Transfer-Encoding is unsupported.")
            self._te_seen = True
        else:
            self.reuse_within = reuse_within(value)

    def on_headers_complete(self) -> None:
        # llhttp resets its flags once the message completes: read them now.
        self._progress = True
        parser = self._parser
        assert parser is not None
        if parser.get_http_version() not in ("1.1", "1.0"):
            raise httpx.RemoteProtocolError("The response is not HTTP/1.0 or HTTP/1.1.")
        status = parser.get_status_code()
        if status < 100:
            raise httpx.RemoteProtocolError("The response's status code is out of range.")
        if status == 101:
            raise httpx.RemoteProtocolError("The server switched protocols unasked.")
        if status < 200:
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise httpx.RemoteProtocolError("The server sent too many interim (1xx) responses.")
            return
        self._head_done = True
        self._keep_alive = parser.should_keep_alive()
        if status in (204, 304):
            self._framed = True  # no body, whatever the headers say
        if self._head_only:
            self._framed = True
            raise _HeadOnly

    def on_body(self, body: bytes) -> None:
        self._progress = True
        self._body += body

    def on_chunk_header(self) -> None:
        self._progress = True

    def on_chunk_complete(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        self._progress = True
        if self._head_done:
            self._answer_complete(keep_alive=self._keep_alive)
        # an interim answer: llhttp goes on to the next message

    def _answer_complete(self, *, keep_alive: bool) -> None:
        self._complete = True
        self._active = False
        self._keep_alive = keep_alive

    # State the pool asks about

    def is_reusable(self, *, ask_socket: bool = True) -> bool:
        """Whether a new request may go out on this connection now.

        Its last answer must be complete and keep-alive, nothing unasked-for may have arrived,
        and the server must not have closed it, even if the loop has not noticed yet.

        Args:
            ask_socket: Ask the socket whether the server closed it (a system call). The pool
                asks once, when it takes the connection for a request, not when it is given
                back: a close in between is seen then.
        """
        return (
            self._complete
            and not self._active
            and self._keep_alive
            and not self._eof
            and not self._stray
            and not self._body
            and (self.expires_at == _INF or self.expires_at > self._loop.time())
            and not (ask_socket and self._poll is not None and self._poll())
        )

    def loop_time(self) -> float:
        """The time on the connection's event loop."""
        return self._loop.time()

    def close(self) -> None:
        """Close the connection at once; whatever it was doing is abandoned."""
        self._keep_alive = False
        self._eof = True
        self._active = False
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        transport = self._transport
        if transport is not None:
            transport.abort()

    # The request

    async def request(
        self,
        request: httpx.Request,
        on_close: Callable[[H1Connection], None],
        ends: float = math.inf,
    ) -> httpx.Response:
        """Send ``request`` and read the answer's head; the body follows through its stream.

        Args:
            request: What to send; its ``timeout`` extension bounds each wait.
            on_close: Called with this connection once the response is closed, to take it
                back (if :meth:`is_reusable`) or close it.
            ends: The loop time by which the request and its whole answer must be done: no
                wait (writing, reading the head or the body) goes past it.

        Raises:
            httpx.TransportError: The request could not be sent or the answer was broken; the
                connection is closed. Cancellation closes it too and propagates unchanged.
        """
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        self._read_timeout = timeouts.get("read")
        self._one_timer = False
        self._ends = ends
        self.expires_at = float("inf")  # a slow answer does not age the connection
        try:
            on_write = request.extensions.get(WRITE_EXTENSION)
            if on_write is not None:
                on_write()  # the write-start signal: bytes may reach the network from here
            await self._send(request, timeouts.get("write"))
            await self._read_head()
        except BaseException:
            self.close()
            raise
        return self._response(on_close)

    def _response(self, on_close: Callable[[H1Connection], None]) -> httpx.Response:
        """The answer whose head was read, its body to follow through its stream."""
        parser = self._parser
        assert parser is not None
        return httpx.Response(
            status_code=parser.get_status_code(),
            headers=[(name, value.rstrip(b" \t")) for name, value in self._headers],
            stream=H1Body(self, self._complete_body(), on_close),
            extensions={
                "http_version": b"HTTP/" + parser.get_http_version().encode("ascii"),
                "reason_phrase": self._reason,
                RATE_LIMIT_EXTENSION: rate_limit_of(self._limits),
            },
        )

    async def post(
        self,
        head: Callable[[bytes], bytes],
        body: bytes,
        on_write: Callable[[], None],
        on_close: Callable[[H1Connection], None],
        ends: float,
    ) -> tuple[int, RateLimit | None] | httpx.Response:
        """Send the client's own request and read its answer: the default pool's fast path.

        Args:
            head: Builds the request's bytes (request line, header lines, ``Content-Length``
                and the body) from ``body``; called once, and its result held by no local.
            body: The request body, in memory.
            on_write: The write-start signal, called right before the first byte is written.
            on_close: As for :meth:`request`; called here already when the answer is complete.
            ends: The loop time by which the request and its whole answer must be done: each
                wait's one timer fires then (the client's read and write timeouts never end
                sooner than its attempt does).

        Returns:
            ``(status, rate limit)`` of a success (2xx) whose body came whole with its head:
            the body is dropped and the connection handed to ``on_close``. Anything else
            (another status, a body still on its way) as :meth:`request` returns it.

        Raises:
            httpx.TransportError: As for :meth:`request`.
        """
        self._read_timeout = None
        self._one_timer = ends != math.inf
        self._ends = ends
        self.expires_at = math.inf
        try:
            on_write()
            if self._parser is None:
                self._parser = httptools.HttpResponseParser(self)
            self._reset_answer(head_only=False)
            self._complete = False
            self._active = True
            # The request line holds the real path: it goes from ``head`` to the socket
            # without a name, so that no frame a traceback shows holds it.
            if self._put(head(body)):
                await self._drained(None)
            while not self._head_done:
                await self._more(_NO_ANSWER if not self._received else _MID_HEAD)
        except BaseException:
            self.close()
            raise
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 200 <= status < 300 and self._complete and self._error is None:
            self._body.clear()
            rate_limit = rate_limit_of(self._limits)
            on_close(self)
            return status, rate_limit
        return self._response(on_close)

    async def _send(self, request: httpx.Request, write_timeout: float | None) -> None:
        fields = request.extensions.get(FIELDS_EXTENSION)
        stream = request.stream
        body: bytes | None
        if fields is not None and type(stream) is httpx.ByteStream:
            # The client's own request: its header lines were built (and checked) once, and
            # only the length of its in-memory body changes from message to message.
            body = b"".join(stream)
            declared, chunked = len(body), False
            head = _request_line(request) + fields + b"Content-Length: %d\r\n\r\n" % declared
        else:
            head, declared, chunked, body = _request_head(request)
        # From here on, whatever arrives is this request's answer.
        if self._parser is None:
            self._parser = httptools.HttpResponseParser(self)
        self._reset_answer(head_only=request.method == "HEAD")
        self._complete = False
        self._active = True
        in_memory = body is not None
        if body is not None:
            if chunked:
                body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
            head += body
        elif not isinstance(stream, httpx.AsyncByteStream):
            raise httpx.LocalProtocolError("The request body is not an async stream.")
        # The one place where the request's first byte leaves: nothing was sent before it.
        waits = self._put(head)
        # Dropped before any wait: a traceback through this frame (a write timeout, a
        # cancellation) must not show the request line, which holds the real path.
        del head, body
        if waits:
            await self._drained(write_timeout)
        if in_memory:
            return
        sent = 0
        async for chunk in stream:  # type: ignore[union-attr]
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
        if self._put(data):
            await self._drained(write_timeout)

    def _put(self, data: bytes) -> bool:
        """Hand ``data`` to the socket; return whether to wait for it to drain."""
        if self._eof:
            # Closed while idle, or while an earlier part was sent: the answer, if any, decides.
            return False
        self._transport.write(data)  # type: ignore[union-attr]
        return self._writing_paused

    async def _drained(self, write_timeout: float | None) -> None:
        """Wait (at most the write timeout) until the socket takes more."""
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
        """Await ``future``; a timer fails it with ``error(text)`` if ``seconds`` pass first.

        The same one timer also keeps the wait within the attempt's end (``self._ends``). On
        the fast path (no ``seconds``: every wait ends with the attempt) the connection's one
        timer does it instead.
        """
        if seconds is None and self._one_timer:
            self._arm()
            await future
            return
        timer = None
        ends = self._ends
        if seconds is not None or ends != math.inf:
            when = math.inf if seconds is None else self._loop.time() + seconds
            if ends < when:
                when, text = ends, ATTEMPT_OVER
            timer = self._loop.call_at(when, _expire, future, error, text)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()

    def _arm(self) -> None:
        """Have the connection's one timer fire by the current request's end."""
        timer = self._timer
        if timer is None or timer.when() > self._ends:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(self._ends, self._time_up)

    def _time_up(self) -> None:
        """The connection's one timer: fail the current wait if its request's end has come."""
        self._timer = None
        ends = self._ends
        if not self._one_timer:
            return  # the request now on the connection has timers of its own
        if self._loop.time() < ends:
            # A later request's end (the timer is only moved to an earlier one): wait on.
            self._timer = self._loop.call_at(ends, self._time_up)
            return
        drain, waiter = self._drain, self._waiter
        if drain is not None:
            _expire(drain, httpx.WriteTimeout, ATTEMPT_OVER)
        if waiter is not None:
            _expire(waiter, httpx.ReadTimeout, ATTEMPT_OVER)

    # The answer

    async def _more(self, message: str) -> None:
        """Raise what broke the answer, or wait (at most the read timeout) for more bytes."""
        if self._error is not None:
            raise self._error
        if self._eof:
            if self._lost is not None:
                raise httpx.ReadError(f"The connection broke: {self._lost}")
            raise httpx.RemoteProtocolError(message)
        if self._reading_paused:
            self._resume_reading()
        waiter = self._waiter = self._loop.create_future()
        if self._read_timeout is None and self._one_timer:
            self._arm()  # _within's fast-path case, without its coroutine
            try:
                await waiter
            finally:
                self._waiter = None
            return
        text = "No response arrived within the read timeout."
        try:
            await self._within(waiter, self._read_timeout, httpx.ReadTimeout, text)
        finally:
            self._waiter = None

    def _resume_reading(self) -> None:
        self._reading_paused = False
        self._transport.resume_reading()  # type: ignore[union-attr]

    async def _read_head(self) -> None:
        while not self._head_done:
            await self._more(_MID_HEAD if self._received else _NO_ANSWER)

    def _complete_body(self) -> bytes | None:
        """The whole body, if it is already here (the usual small answer); else None."""
        if not self._complete or self._error is not None:
            return None
        body = bytes(self._body)
        self._body.clear()
        return body

    def _take(self) -> bytes:
        buffer = self._body
        size = min(len(buffer), PIECE)
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
            while True:
                if self._body:
                    return self._take()
                if self._complete:
                    return b""
                await self._more(_EARLY)
        except BaseException:
            self.close()
            raise


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


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int
) -> Sequence[tuple[int, int, int, str, tuple[Any, ...]]]:
    """The addresses to connect to: an IP literal as it is, a name from the resolver.

    An IP literal needs no lookup, and skipping it saves a hop to the resolver's thread.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), port))]


async def open_connection(
    origin: Origin, *, ssl_context: ssl.SSLContext | None, connect_timeout: float | None
) -> H1Connection:
    """Open a connection to ``origin`` (TLS when ``ssl_context`` is given).

    The addresses of a name are raced as RFC 8305 says (happy eyeballs): the next one is
    tried :data:`HAPPY_EYEBALLS_DELAY` seconds after the previous one started, the families
    interleaved, and ``connect_timeout`` covers the whole race.

    Raises:
        httpx.ConnectTimeout: Not connected (TLS handshake included) within ``connect_timeout``.
        httpx.ConnectError: Refused, unreachable, unresolvable or a failed handshake.
    """
    _, raw_host, port = origin
    host = raw_host.decode("ascii")
    loop = asyncio.get_running_loop()
    connection = H1Connection(origin, loop)
    deadline = asyncio.timeout(connect_timeout)
    server_hostname = host if ssl_context is not None else None
    try:
        async with deadline:
            addresses = await _resolve(loop, host, port)
            if len(addresses) == 1:
                # One address: nothing to race (and no race whose cancellation could leak a
                # socket, as asyncio's does on Python 3.11).
                family, _, _, _, address = addresses[0]
                await loop.create_connection(
                    lambda: connection,
                    str(address[0]),
                    port,
                    ssl=ssl_context,
                    server_hostname=server_hostname,
                    family=family,
                )
            else:
                await loop.create_connection(
                    lambda: connection,
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=server_hostname,
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                    interleave=1,
                )
    except UnicodeError:
        # A name the resolver cannot encode (a label over 63 characters): nothing was sent.
        raise httpx.ConnectError(f"Could not resolve {host!r}: not a valid host name.") from None
    except OSError as exc:
        if deadline.expired():
            raise httpx.ConnectTimeout(f"Connecting to {host}:{port} timed out.") from None
        raise httpx.ConnectError(f"Could not connect to {host}:{port}: {exc}") from exc
    return connection
