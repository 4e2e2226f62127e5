"""The pool's path on any backend but asyncio's own connections: httpcore's, behind anyio.

Imported by :mod:`._pool` on first use only: httpcore (and trio, which httpcore imports when it
is installed) costs a cold start tens of milliseconds that a client posting on asyncio through
hookapi's own connections never needs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpcore
import httpx

from ._transport import ATTEMPT_OVER, WRITE_EXTENSION, OriginKey, origin_of, within

if TYPE_CHECKING:
    import ssl


class _Owner(Protocol):
    """The pool a response body hands its connection back to."""

    async def _give_back(self, connection: _Connection, key: OriginKey) -> None: ...


# httpcore's errors, most specific first, and the httpx error each becomes.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _text_of(exc: BaseException) -> str:
    # On trio a failed TLS handshake is an empty error caused by an empty one caused by the
    # ssl error ("certificate verify failed"): that last text is what the user needs to read.
    seen: BaseException | None = exc
    while seen is not None and not str(seen):
        seen = seen.__cause__
    return str(seen or "")


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError:
        raise
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(_text_of(exc)) from exc
        raise


async def _close_quietly(connection: httpcore.AsyncHTTPConnection) -> None:
    # Shielded: a cancelled request must still give its socket back to the OS.
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await connection.aclose()


class _Pieces:
    """A request body for httpcore: one async iteration over bytes, with no async generator.

    An async generator left suspended (a request cancelled mid-write) is finalised by the
    garbage collector, and trio warns about each one; a plain iterator leaves nothing behind.
    """

    __slots__ = ("_data", "_done")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._done = False

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        self._done = True
        return self._data


def _body_of(stream: Any) -> Any:
    # A body in memory (what the client sends) is handed over without a generator.
    if isinstance(stream, httpx.ByteStream):
        return _Pieces(b"".join(stream))
    return stream


class _Body(httpx.AsyncByteStream):
    """A response body that hands its connection back to the pool when closed."""

    def __init__(
        self,
        stream: Any,
        pool: _Owner,
        connection: _Connection,
        key: OriginKey,
    ) -> None:
        self._stream = stream
        self._iterator: Any = None
        self._pool = pool
        self._connection: _Connection | None = connection
        self._key = key

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self._iterator = aiter(self._stream)
        with _as_httpx_errors():
            chunk: bytes = await anext(self._iterator)
            return chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            with anyio.CancelScope(shield=True), _as_httpx_errors():
                # httpcore's iterator is an async generator: closed here, never left to the GC.
                iterator = self._iterator
                if iterator is not None and hasattr(iterator, "aclose"):
                    await iterator.aclose()
                await self._stream.aclose()
        finally:
            await self._pool._give_back(connection, self._key)


def _traced(extensions: dict[str, Any]) -> dict[str, Any]:
    """``extensions`` with an httpcore ``trace`` that gives the write-start signal."""
    on_write = extensions.get(WRITE_EXTENSION)
    if on_write is None:
        return extensions
    chained = extensions.get("trace")

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name == "http11.send_request_headers.started":
            on_write()
        if chained is not None:
            await chained(name, info)

    return {**extensions, "trace": trace}


def _core_request(request: httpx.Request) -> httpcore.Request:
    """``request`` as httpcore takes it.

    Made here and handed straight on: the real path is in no local of the pool's frames,
    which a traceback (a cancellation's, say) would show to whatever renders locals.
    """
    url = request.url
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=url.raw_scheme,
            host=url.raw_host,
            port=origin_of(request)[2],
            target=url.raw_path,
        ),
        headers=request.headers.raw,
        content=_body_of(request.stream),
        extensions=_traced(request.extensions),
    )


class _Bound(httpcore.AsyncNetworkBackend):
    """httpcore's network backend for one connection, its waits kept within the attempt's end.

    httpcore bounds each read by the read timeout, so an answer trickling a byte at a time
    never ends; the end is passed in here, to the timer httpcore starts for each read anyway.
    """

    __slots__ = ("_inner", "ends")

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.ends = math.inf  # the current request's end, in anyio.current_time() seconds

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, within(timeout, self.ends), local_address, socket_options
        )
        return _BoundStream(stream, self)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _BoundStream(httpcore.AsyncNetworkStream):
    """A socket whose reads, writes and handshake end by its backend's ``ends``."""

    __slots__ = ("_bound", "_inner")

    def __init__(self, inner: httpcore.AsyncNetworkStream, bound: _Bound) -> None:
        self._inner = inner
        self._bound = bound

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        ends = self._bound.ends
        try:
            return await self._inner.read(max_bytes, within(timeout, ends))
        except httpcore.ReadTimeout:
            if anyio.current_time() >= ends:
                raise httpcore.ReadTimeout(ATTEMPT_OVER) from None
            raise

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        ends = self._bound.ends
        try:
            await self._inner.write(buffer, within(timeout, ends))
        except httpcore.WriteTimeout:
            if anyio.current_time() >= ends:
                raise httpcore.WriteTimeout(ATTEMPT_OVER) from None
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(
            ssl_context, server_hostname, within(timeout, self._bound.ends)
        )
        return _BoundStream(inner, self._bound)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Connection(httpcore.AsyncHTTPConnection):
    """httpcore's connection on a :class:`_Bound` backend of its own."""

    def __init__(
        self, origin: httpcore.Origin, ssl_context: ssl.SSLContext | None, keepalive_expiry: float
    ) -> None:
        self.bound = _Bound()
        self.retire_at = math.inf  # when the server's Keep-Alive timeout is near, idle
        super().__init__(
            origin=origin,
            ssl_context=ssl_context,
            keepalive_expiry=keepalive_expiry,
            network_backend=self.bound,
        )
