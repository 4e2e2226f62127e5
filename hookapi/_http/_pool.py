"""The default inner transport: keep-alive HTTP/1.1 connections on a stack, constant work each.

httpx's own pool (httpcore's ``AsyncConnectionPool``) rescans every connection and every
queued request whenever a request starts or ends, so its cost per request grows with the
square of the concurrency: a burst from 32 tasks ran at a quarter of the rate of one task.
This pool keeps idle connections on a stack and bounds them with a semaphore, so each request
costs the same however many are in flight. On asyncio its connections are hookapi's own
(:mod:`._h1`, asyncio protocols whose answers llhttp parses); on any other anyio backend (trio),
and wherever ``httptools`` cannot be imported, they are httpcore's, through its public
connection class. One pool may serve many clients (many hooks): its owner closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import httpx

from .._exceptions import InvalidInputError, WrongEventLoopError, builds
from ._loop import current_loop, loop_mismatch
from ._tls import tls_context
from ._transport import (
    ATTEMPT_EXTENSION,
    DEADLINE_EXTENSION,
    WRITE_EXTENSION,
    OriginKey,
    origin_of,
    reuse_within,
    within,
)

try:
    from ._h1 import open_connection
except ImportError:  # httptools is not installed (it is required on CPython only)
    open_connection = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import ssl

    import httpcore

    from .._quota import RateLimit
    from ._core import _Connection
    from ._h1 import H1Connection, Origin
    from ._tls import CertTypes, VerifyTypes

__all__ = ["LLHTTP", "ConnectionPool"]

#: Whether asyncio requests go through hookapi's llhttp connections (else httpcore's).
LLHTTP = open_connection is not None
logging.getLogger("hookapi").debug(
    "hookapi's pool: asyncio requests on %s.",
    "llhttp connections (httptools)"
    if LLHTTP
    else "httpcore's connections (httptools cannot be imported)",
)


_POOL_TIMEOUT = "No connection came free within the pool timeout."


def _on_asyncio() -> bool:
    # A task of asyncio's own: trio (even as a guest on an asyncio loop) runs none.
    try:
        return asyncio.current_task() is not None
    except RuntimeError:
        return False


_httpcore_method: list[object] = [None, False]  # the method last looked at, and the answer


def _httpcore_patched() -> bool:
    # respx's default mocking patches httpcore's connection class; while it does, requests
    # take httpcore's path so that the mocks see them, as they did before the asyncio path.
    # Patching it imports httpcore first: while nothing has, nothing has patched it.
    httpcore = sys.modules.get("httpcore")
    if httpcore is None:
        return False
    method = httpcore.AsyncHTTPConnection.handle_async_request
    last = _httpcore_method
    if method is not last[0]:
        module = getattr(method, "__module__", None)
        last[:] = [method, not (isinstance(module, str) and module.startswith("httpcore."))]
    return last[1] is True


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.PoolTimeout(_POOL_TIMEOUT))


class _Slots:
    """The connection limit on asyncio: a count of free slots and a queue of waiting futures.

    An anyio Semaphore yields to the event loop on every acquire, even with a slot free; this
    takes a free slot without waiting, and a release hands its slot straight to the first
    waiter. The pool timeout fails the waiter's future rather than cancelling its task.
    """

    __slots__ = ("_ends", "_free", "_timer", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()
        # The fast path's waits: when each ends, and the one timer that ends them.
        self._ends: dict[asyncio.Future[None], float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def take(self) -> bool:
        """Take a free slot without waiting, if there is one and nobody waits for one."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

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
            await self._wait(waiter)
        finally:
            if timer is not None:
                timer.cancel()

    async def acquire_by(self, ends: float, loop: asyncio.AbstractEventLoop) -> None:
        """:meth:`acquire`, the wait ending at the loop time ``ends``: the fast path's.

        Every such wait shares one timer, set for the soonest end and moved only when a wait
        must end sooner, instead of a timer per wait (whose creation, cancellation and place
        in the loop's heap cost more than the wait itself when 100 requests queue).
        """
        if self._free and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if ends != math.inf:
            self._ends[waiter] = ends
            timer = self._timer
            if timer is None or timer.when() > ends:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(ends, self._time_up, loop)
        try:
            await self._wait(waiter)
        finally:
            self._ends.pop(waiter, None)

    async def _wait(self, waiter: asyncio.Future[None]) -> None:
        """Wait to be handed a slot; on leaving early, pass on a slot handed meanwhile."""
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed a slot just as it gave up: pass it on
            else:
                with contextlib.suppress(ValueError):  # a release may have dropped it already
                    self._waiters.remove(waiter)
            raise

    def _time_up(self, loop: asyncio.AbstractEventLoop) -> None:
        """The shared timer: fail the waits whose end has come, then wait for the next end."""
        self._timer = None
        now = loop.time()
        soonest = math.inf
        for waiter, ends in list(self._ends.items()):
            if ends <= now:
                _time_out(waiter)
            elif ends < soonest:
                soonest = ends
        if soonest != math.inf:
            self._timer = loop.call_at(soonest, self._time_up, loop)

    def release(self) -> None:
        """Hand the slot to the first waiter, or mark it free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _left(timeout: float, ends: float, loop: asyncio.AbstractEventLoop) -> float:
    """:func:`_within` on asyncio, with the loop's clock read directly."""
    if ends == math.inf:
        return timeout
    return min(timeout, max(0.0, ends - loop.time()))


def _check_limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, not {type(value).__name__}.")
    if value < 1:
        raise InvalidInputError(f"{name} must be at least 1, not {value}.")
    return value


class ConnectionPool(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections with constant work per request, shareable by clients.

    Pass one pool as ``transport=`` to many :class:`~hookapi.AsyncHookClient` s (one per hook)
    and they share its connections: the pool belongs to whoever made it, and closing a client
    never closes it. Close it yourself (``async with`` or :meth:`aclose`) after the clients.
    Like every asyncio resource it belongs to the event loop it first ran on.

    It gives the write-start signal (the ``hookapi.on_write`` request extension) right before
    the first byte of a request is written, on both paths, so a request that failed or was
    cancelled before that is known not to have been sent.

    Args:
        max_connections: Connections in use at once, all hosts together; more requests wait
            (up to the ``pool`` timeout) for one to come free. Idle connections are kept up
            to the same number.
        max_connections_per_host: Connections in use at once to one origin (scheme, host,
            port); default: no limit beyond ``max_connections``.
        keepalive_expiry: Seconds an idle connection is kept for reuse; less when the server's
            ``Keep-Alive: timeout=N`` says it closes sooner (the connection is then retired a
            second before the server would close it).
        verify: How https servers are verified: True (certifi's roots, or the environment's
            ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when ``trust_env``), a CA bundle path (a
            file, or a directory of hashed certificates), an ``ssl.SSLContext`` used as it
            is, or False: no verification, with an :class:`~hookapi.InsecureTLSWarning`.
        cert: A client certificate to present: a PEM file with the certificate and its
            key, or a ``(certificate, key)`` pair of paths.
        trust_env: Honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` when ``verify`` is True.

    Raises:
        InvalidInputError: A limit that is not a positive int, or TLS settings that cannot be
            used (a missing CA bundle, an encrypted key, ...).
    """

    #: It calls the ``hookapi.on_write`` request extension before writing.
    hookapi_on_write = True

    @builds
    def __init__(
        self,
        *,
        max_connections: int = 32,
        max_connections_per_host: int | None = None,
        keepalive_expiry: float = 5.0,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
    ) -> None:
        self._max = _check_limit("max_connections", max_connections)
        self._per_host = (
            None
            if max_connections_per_host is None
            else _check_limit("max_connections_per_host", max_connections_per_host)
        )
        self._expiry = keepalive_expiry
        self._trust_env = trust_env
        # Anything but the default is made now: a bad path fails here, not at the first post.
        self._ssl = (
            None
            if verify is True and cert is None
            else tls_context(verify=verify, cert=cert, trust_env=trust_env)
        )
        self._alpn_set = False
        self._closed = False
        self._loop: object | None = None  # the event loop of the first request
        self._asyncio: bool | None = None  # which path, learnt on the first request
        # The asyncio path:
        self._h1_idle: dict[Origin, list[H1Connection]] = {}
        self._h1_idle_count = 0  # connections in those lists, kept as they change
        self._h1_slots: _Slots | None = None
        self._h1_host_slots: dict[Origin, _Slots] = {}
        # Any other backend:
        self._idle: dict[OriginKey, list[_Connection]] = {}
        self._slots: anyio.Semaphore | None = None
        self._host_slots: dict[OriginKey, anyio.Semaphore] = {}

    def __repr__(self) -> str:
        return f"<ConnectionPool max_connections={self._max} idle={self.idle_connections}>"

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for a request, all hosts together."""
        idle = self._idle
        return self._h1_idle_count + (sum(map(len, idle.values())) if idle else 0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on an idle connection (or a new one) and return the answer.

        The connection goes back to the pool when the response is closed.

        Raises:
            WrongEventLoopError: The pool first ran on another event loop.
            httpx.TransportError: The request failed (``UnsupportedProtocol`` once closed).
        """
        if self._asyncio is None:
            self._learn_loop()
        elif (text := loop_mismatch("connection pool", self._loop)) is not None:
            raise WrongEventLoopError(text)
        if self._closed:
            raise httpx.UnsupportedProtocol("The connection pool is closed.")
        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol("Only http:// and https:// URLs are supported.")
        if self._asyncio and not _httpcore_patched():
            return await self._send_h1(request)
        return await self._send_httpcore(request)

    def bounds_every_wait(self) -> bool:
        """Whether the next request goes through hookapi's own asyncio connections.

        Their every wait (a free slot, connecting, writing, reading) ends by the attempt's
        end and the request's deadline, so a caller needs no cancel scope to keep either.
        Only on asyncio, and not while respx mocks httpcore. Asked before the pool's first
        request, it learns the loop then, as that request would: so the first request takes
        the same path as the rest (the other one loads anyio's backend, a cold start's cost).
        """
        if self._asyncio is None:
            if current_loop() is None:
                return False  # no loop runs: nothing to learn yet
            self._learn_loop()
        return bool(self._asyncio) and not self._closed and not _httpcore_patched()

    def _learn_loop(self) -> None:
        """Bind the pool to the running loop, and pick the path its requests take there."""
        self._loop = current_loop()
        self._asyncio = LLHTTP and _on_asyncio()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = tls_context(trust_env=self._trust_env)
        return self._ssl

    # The asyncio path: hookapi's own connections, no awaiting beyond the network's.

    async def _send_h1(self, request: httpx.Request) -> httpx.Response:
        slots = self._h1_slots
        if slots is None:
            slots = self._h1_slots = _Slots(self._max)
        extensions = request.extensions
        timeouts = extensions.get("timeout") or {}
        attempt = extensions.get(ATTEMPT_EXTENSION)
        ends = extensions.get(DEADLINE_EXTENSION, math.inf)
        if attempt is not None:
            ends = min(ends, asyncio.get_running_loop().time() + attempt)
        origin = origin_of(request)
        https = origin[0] == b"https"
        host_slots = None
        if self._per_host is not None:
            host_slots = self._h1_host_slots.get(origin)
            if host_slots is None:
                host_slots = self._h1_host_slots[origin] = _Slots(self._per_host)
            await host_slots.acquire(within(timeouts.get("pool"), ends))
        try:
            await slots.acquire(within(timeouts.get("pool"), ends))
            try:
                connection = self._idle_h1(origin)
                if connection is None:
                    connect = within(timeouts.get("connect"), ends)
                    connection = await self._open_h1(origin, https, connect)
                return await connection.request(request, self._give_back_h1, ends)
            except BaseException:
                slots.release()
                raise
        except BaseException:
            if host_slots is not None:
                host_slots.release()
            raise

    async def post(
        self,
        origin: tuple[bytes, bytes, int],
        head: Callable[[bytes], bytes],
        body: bytes,
        *,
        attempt: float,
        deadline: float,
        on_write: Callable[[], None],
    ) -> tuple[int, RateLimit | None] | httpx.Response:
        """Send the client's own request, given as its bytes: the fast path, asyncio only.

        For hookapi's own transport; applications post through a client.

        What :meth:`handle_async_request` does for the client's request on asyncio, without
        the request and (for a complete success) the response objects. Only when
        :meth:`bounds_every_wait` says the asyncio path is taken.

        Args:
            origin: (scheme, host, port) to send to.
            head: Builds the request's bytes from ``body`` (the real path is in them: they
                are built at the write, never held by a local here).
            body: The request body.
            attempt: Seconds the attempt may take as a whole (its timeout, every wait's).
            deadline: The call's deadline, in loop time.
            on_write: The write-start signal.

        Returns:
            ``(status, rate limit)`` of a 2xx answer that came whole (the connection is back in
            the pool), else the response as :meth:`handle_async_request` returns it.

        Raises:
            WrongEventLoopError: The pool first ran on another event loop.
            httpx.TransportError: The request failed (``UnsupportedProtocol`` once closed).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise WrongEventLoopError(loop_mismatch("connection pool", self._loop) or "")
        if self._closed:
            raise httpx.UnsupportedProtocol("The connection pool is closed.")
        now = loop.time()
        ends = min(deadline, now + attempt)
        slots = self._h1_slots
        if slots is None:
            slots = self._h1_slots = _Slots(self._max)
        host_slots = None
        if self._per_host is not None:
            host_slots = self._h1_host_slots.get(origin)
            if host_slots is None:
                host_slots = self._h1_host_slots[origin] = _Slots(self._per_host)
            await host_slots.acquire_by(ends, loop)
        try:
            if not slots.take():
                await slots.acquire_by(ends, loop)
            try:
                connection = self._idle_h1(origin)
                if connection is None:
                    connect = _left(attempt, ends, loop)
                    connection = await self._open_h1(origin, origin[0] == b"https", connect)
                return await connection.post(head, body, on_write, self._give_back_h1, ends)
            except BaseException:
                slots.release()
                raise
        except BaseException:
            if host_slots is not None:
                host_slots.release()
            raise

    def _idle_h1(self, origin: Origin) -> H1Connection | None:
        idle = self._h1_idle.get(origin)
        while idle:
            candidate = idle.pop()
            self._h1_idle_count -= 1
            if candidate.is_reusable():
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
            if (
                not self._closed
                and connection.is_reusable(ask_socket=False)
                and self.idle_connections < self._max
            ):
                idle = min(self._expiry, connection.reuse_within)
                connection.expires_at = connection.loop_time() + idle
                idle_here = self._h1_idle.get(connection.origin)
                if idle_here is None:
                    idle_here = self._h1_idle[connection.origin] = []
                idle_here.append(connection)
                self._h1_idle_count += 1
            else:
                connection.close()
        finally:
            assert self._h1_slots is not None
            self._h1_slots.release()
            host_slots = self._h1_host_slots.get(connection.origin)
            if host_slots is not None:
                host_slots.release()

    # Any other backend (trio): httpcore's connections behind anyio semaphores.

    async def _acquire(self, slots: anyio.Semaphore, wait: float | None) -> None:
        if slots.value:
            await slots.acquire()
            return
        with anyio.move_on_after(wait if wait is not None else float("inf")):
            await slots.acquire()
            return
        raise httpx.PoolTimeout(_POOL_TIMEOUT)

    async def _connection_for(self, key: OriginKey, origin: httpcore.Origin) -> _Connection:
        from ._core import _close_quietly, _Connection  # noqa: PLC0415

        idle = self._idle.get(key)
        while idle:
            candidate = idle.pop()
            if (
                not candidate.has_expired()
                and candidate.is_available()
                and (candidate.retire_at == math.inf or candidate.retire_at > anyio.current_time())
            ):
                return candidate
            await _close_quietly(candidate)
        return _Connection(
            origin, self._ssl_context() if origin.scheme == b"https" else None, self._expiry
        )

    async def _send_httpcore(self, request: httpx.Request) -> httpx.Response:
        timeout = (request.extensions.get("timeout") or {}).get("pool")
        attempt = request.extensions.get(ATTEMPT_EXTENSION)
        ends = math.inf if attempt is None else anyio.current_time() + attempt
        key = origin_of(request)
        # httpcore loads on this path's first request (cold start: asyncio's never needs it).
        import httpcore  # noqa: PLC0415

        from ._core import _as_httpx_errors, _Body, _close_quietly, _core_request  # noqa: PLC0415

        origin = httpcore.Origin(*key)
        host_slots = None
        if self._per_host is not None:
            host_slots = self._host_slots.get(key)
            if host_slots is None:
                host_slots = self._host_slots[key] = anyio.Semaphore(self._per_host)
            await self._acquire(host_slots, timeout)
        try:
            if self._slots is None:
                self._slots = anyio.Semaphore(self._max)
            await self._acquire(self._slots, timeout)
            try:
                connection = await self._connection_for(key, origin)
                connection.bound.ends = ends
                if _httpcore_patched():
                    # A mock stands in for httpcore's connections: it never traces a write.
                    on_write = request.extensions.get(WRITE_EXTENSION)
                    if on_write is not None:
                        on_write()
                try:
                    with _as_httpx_errors():
                        response = await connection.handle_async_request(_core_request(request))
                except BaseException:
                    await _close_quietly(connection)
                    raise
            except BaseException:
                self._slots.release()
                raise
        except BaseException:
            if host_slots is not None:
                host_slots.release()
            raise
        connection.retire_at = math.inf
        for name, value in response.headers:
            if name.lower() == b"keep-alive":
                connection.retire_at = reuse_within(value)  # seconds, until given back
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, self, connection, key),
            extensions=response.extensions,
        )

    async def _give_back(self, connection: _Connection, key: OriginKey) -> None:
        try:
            if not self._closed and connection.is_idle() and self.idle_connections < self._max:
                if connection.retire_at != math.inf:
                    connection.retire_at += anyio.current_time()
                self._idle.setdefault(key, []).append(connection)
            else:
                from ._core import _close_quietly  # noqa: PLC0415

                await _close_quietly(connection)
        finally:
            if self._slots is not None:
                self._slots.release()
            host_slots = self._host_slots.get(key)
            if host_slots is not None:
                host_slots.release()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close as their responses do.

        Only the pool's owner should call it: clients given this pool never do.
        """
        self._closed = True
        h1_idle, self._h1_idle = self._h1_idle, {}
        self._h1_idle_count = 0
        for h1_list in h1_idle.values():
            for h1 in h1_list:
                h1.close()
        idle, self._idle = self._idle, {}
        if idle:  # httpcore's connections: its module is loaded already
            from ._core import _close_quietly  # noqa: PLC0415

            for connections in idle.values():
                for connection in connections:
                    await _close_quietly(connection)
