"""The default inner transport: keep-alive HTTP/1.1 connections on a stack, constant work each.

httpx's own pool (httpcore's ``AsyncConnectionPool``) rescans every connection and every
queued request whenever a request starts or ends, so its cost per request grows with the
square of the concurrency: a burst from 32 tasks ran at a quarter of the rate of one task.
This pool keeps idle connections on a stack and bounds them with a semaphore, so each request
costs the same however many are in flight. It uses httpcore's public connection class for
the protocol itself, and runs on any anyio backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import httpcore
import httpx

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


class ConnectionPool(httpx.AsyncBaseTransport):
    """At most ``max_connections`` keep-alive HTTP/1.1 connections, with constant work per request.

    Args:
        max_connections: Connections open at once; more requests wait (up to the ``pool``
            timeout) for one to come free.
        keepalive_expiry: Seconds an idle connection is kept for reuse.
        ssl_context: For https; default: httpx's (certifi's roots), made on first use.
    """

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
        self._idle: list[httpcore.AsyncHTTPConnection] = []
        self._slots: anyio.Semaphore | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<ConnectionPool max_connections={self._max} idle={len(self._idle)}>"

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
        raise httpx.PoolTimeout("No connection came free within the pool timeout.")

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
        if origin.scheme == b"https" and self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return httpcore.AsyncHTTPConnection(
            origin=origin, ssl_context=self._ssl, keepalive_expiry=self._expiry
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on an idle connection (or a new one) and return the answer.

        The connection goes back to the pool when the response is closed.
        """
        if self._closed:
            raise httpx.UnsupportedProtocol("The connection pool is closed.")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol("Only http:// and https:// URLs are supported.")
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
                content=request.stream,
                extensions=request.extensions,
            )
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
        idle, self._idle = self._idle, []
        for connection in idle:
            await _close_quietly(connection)
