"""The default inner transport: keep-alive HTTP/1.1 connections on a stack, constant work each.

httpx's own pool (httpcore's ``AsyncConnectionPool``) rescans every connection and every
queued request whenever a request starts or ends, so its cost per request grows with the
square of the concurrency: a burst from 32 tasks ran at a quarter of the rate of one task.
This pool keeps idle connections on a stack and bounds them with a semaphore, so each request
costs the same however many are in flight. On asyncio its connections are hookapi's own
(:mod:`hookapi._h1`, on asyncio protocols); on any other anyio backend (trio) they are
httpcore's, through its public connection class.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import httpcore
import httpx

from ._h1 import H1Connection, Origin, open_connection
from ._transport import WRITE_EXTENSION

if TYPE_CHECKING:
    import ssl

__all__ = ["ConnectionPool"]

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


_POOL_TIMEOUT = "No connection came free within the pool timeout."


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError:
        raise
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


async def _close_quietly(connection: httpcore.AsyncHTTPConnection) -> None:
    # Shielded: a cancelled request must still give its socket back to the OS.
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await connection.aclose()


class _Body(httpx.AsyncByteStream):
    """A response body that hands its connection back to the pool when closed."""

    def __init__(
        self,
        stream: Any,
        pool: ConnectionPool,
        connection: httpcore.AsyncHTTPConnection,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._connection: httpcore.AsyncHTTPConnection | None = connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            with anyio.CancelScope(shield=True), _as_httpx_errors():
                await self._stream.aclose()
        finally:
            await self._pool._give_back(connection)


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


class _Content:
    """A request body in one chunk, iterated without an async generator.

    httpcore iterates the body with ``async for``; httpx's ``ByteStream`` is an async
    generator, which a cancellation mid-write leaves to the garbage collector (and a
    ``ResourceWarning``). This iterator has nothing to finalise.
    """

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body

    def __aiter__(self) -> _Content:
        return self

    async def __anext__(self) -> bytes:
        body, self._body = self._body, None
        if body is None:
            raise StopAsyncIteration
        return body


def _on_asyncio() -> bool:
    # A task of asyncio's own: trio (even as a guest on an asyncio loop) runs none.
    try:
        return asyncio.current_task() is not None
    except RuntimeError:
        return False


def _httpcore_patched() -> bool:
    # respx's default mocking patches httpcore's connection class; while it does, requests
    # take httpcore's path so that the mocks see them, as they did before the asyncio path.
    module = getattr(httpcore.AsyncHTTPConnection.handle_async_request, "__module__", None)
    return not (isinstance(module, str) and module.startswith("httpcore."))


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.PoolTimeout(_POOL_TIMEOUT))


class _Slots:
    """The connection limit on asyncio: a count of free slots and a queue of waiting futures.

    An anyio Semaphore yields to the event loop on every acquire, even with a slot free; this
    takes a free slot without waiting, and a release hands its slot straight to the first
    waiter. The pool timeout fails the waiter's future rather than cancelling its task.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, pool_timeout: float | None) -> None:
        """Take a slot, waiting at most ``pool_timeout`` seconds (None: for ever) for one."""
        if self._free and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if pool_timeout is None else loop.call_later(pool_timeout, _time_out, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed a slot just as it gave up: pass it on
            else:
                with contextlib.suppress(ValueError):  # a release may have dropped it already
                    self._waiters.remove(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self) -> None:
        """Hand the slot to the first waiter, or mark it free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class ConnectionPool(httpx.AsyncBaseTransport):
    """At most ``max_connections`` keep-alive HTTP/1.1 connections, with constant work per request.

    It gives the write-start signal (the ``hookapi.on_write`` request extension) right before
    the first byte of a request is written, on both paths, so a request that failed or was
    cancelled before that is known not to have been sent.

    Args:
        max_connections: Connections open at once; more requests wait (up to the ``pool``
            timeout) for one to come free.
        keepalive_expiry: Seconds an idle connection is kept for reuse.
        ssl_context: For https; default: httpx's (certifi's roots), made on first use.
    """

    #: It calls the ``hookapi.on_write`` request extension before writing.
    hookapi_on_write = True

    def __init__(
        self,
        *,
        max_connections: int = 32,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._alpn_set = False
        self._closed = False
        self._asyncio: bool | None = None  # which path, learnt on the first request
        # The asyncio path:
        self._h1_idle: list[H1Connection] = []
        self._h1_slots: _Slots | None = None
        # Any other backend:
        self._idle: list[httpcore.AsyncHTTPConnection] = []
        self._slots: anyio.Semaphore | None = None

    def __repr__(self) -> str:
        idle = len(self._idle) + len(self._h1_idle)
        return f"<ConnectionPool max_connections={self._max} idle={idle}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on an idle connection (or a new one) and return the answer.

        The connection goes back to the pool when the response is closed.
        """
        if self._closed:
            raise httpx.UnsupportedProtocol("The connection pool is closed.")
        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol("Only http:// and https:// URLs are supported.")
        if self._asyncio is None:
            self._asyncio = _on_asyncio()
        if self._asyncio and not _httpcore_patched():
            return await self._send_h1(request)
        return await self._send_httpcore(request)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    # The asyncio path: hookapi's own connections, no awaiting beyond the network's.

    async def _send_h1(self, request: httpx.Request) -> httpx.Response:
        slots = self._h1_slots
        if slots is None:
            slots = self._h1_slots = _Slots(self._max)
        timeouts = request.extensions.get("timeout") or {}
        await slots.acquire(timeouts.get("pool"))
        try:
            url = request.url
            https = url.scheme == "https"
            origin = (url.raw_scheme, url.raw_host, url.port or (443 if https else 80))
            connection = self._idle_h1(origin)
            if connection is None:
                connection = await self._open_h1(origin, https, timeouts.get("connect"))
            return await connection.request(request, self._give_back_h1)
        except BaseException:
            slots.release()
            raise

    def _idle_h1(self, origin: Origin) -> H1Connection | None:
        idle = self._h1_idle
        while idle:
            candidate = idle.pop()
            if candidate.origin == origin and candidate.is_reusable():
                return candidate
            candidate.close()
        return None

    async def _open_h1(
        self, origin: Origin, https: bool, connect_timeout: float | None
    ) -> H1Connection:
        context = None
        if https:
            context = self._ssl_context()
            if not self._alpn_set:
                # Offer HTTP/1.1 only, as httpcore does, so that no server picks HTTP/2.
                context.set_alpn_protocols(["http/1.1"])
                self._alpn_set = True
        return await open_connection(origin, ssl_context=context, connect_timeout=connect_timeout)

    def _give_back_h1(self, connection: H1Connection) -> None:
        try:
            if not self._closed and connection.is_reusable():
                connection.expires_at = asyncio.get_running_loop().time() + self._expiry
                self._h1_idle.append(connection)
            else:
                connection.close()
        finally:
            assert self._h1_slots is not None
            self._h1_slots.release()

    # Any other backend (trio): httpcore's connections behind an anyio semaphore.

    async def _acquire_slot(self, request: httpx.Request) -> anyio.Semaphore:
        if self._slots is None:
            self._slots = anyio.Semaphore(self._max)
        slots = self._slots
        if slots.value:
            await slots.acquire()
            return slots
        timeout = request.extensions.get("timeout", {}).get("pool")
        with anyio.move_on_after(timeout if timeout is not None else float("inf")):
            await slots.acquire()
            return slots
        raise httpx.PoolTimeout(_POOL_TIMEOUT)

    async def _connection_for(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        while self._idle:
            candidate = self._idle.pop()
            if (
                candidate.can_handle_request(origin)
                and not candidate.has_expired()
                and candidate.is_available()
            ):
                return candidate
            await _close_quietly(candidate)
        return httpcore.AsyncHTTPConnection(
            origin=origin,
            ssl_context=self._ssl_context() if origin.scheme == b"https" else None,
            keepalive_expiry=self._expiry,
        )

    async def _send_httpcore(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        slots = await self._acquire_slot(request)
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
            origin = httpcore.Origin(url.raw_scheme, url.raw_host, port)
            connection = await self._connection_for(origin)
            core_request = httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=_Content(b"".join(stream))
                if isinstance(stream := request.stream, httpx.ByteStream)
                else request.stream,
                extensions=_traced(request.extensions),
            )
            if _httpcore_patched():
                # A mock stands in for httpcore's connections: it never traces a write.
                on_write = request.extensions.get(WRITE_EXTENSION)
                if on_write is not None:
                    on_write()
            try:
                with _as_httpx_errors():
                    response = await connection.handle_async_request(core_request)
            except BaseException:
                await _close_quietly(connection)
                raise
        except BaseException:
            slots.release()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, self, connection),
            extensions=response.extensions,
        )

    async def _give_back(self, connection: httpcore.AsyncHTTPConnection) -> None:
        try:
            if not self._closed and connection.is_idle():
                self._idle.append(connection)
            else:
                await _close_quietly(connection)
        finally:
            if self._slots is not None:
                self._slots.release()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close as their responses do."""
        self._closed = True
        h1_idle, self._h1_idle = self._h1_idle, []
        for h1 in h1_idle:
            h1.close()
        idle, self._idle = self._idle, []
        for connection in idle:
            await _close_quietly(connection)
