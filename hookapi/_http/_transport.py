"""The httpx transport layer: throttle before sending, put the secret in last, read the quota.

:class:`RateLimitTransport` wraps any inner ``httpx.AsyncBaseTransport``. The requests it
receives carry ``***`` where the secret goes; only the request handed to the inner transport
holds the real URL, so nothing above this layer (loggers, errors, reprs) can see the secret.
"""

from __future__ import annotations

import asyncio
import math
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx

from .._exceptions import Delivery
from .._quota import (
    HookKey,
    MemoryQuota,
    QuotaAnswer,
    QuotaGate,
    QuotaStore,
    RateLimit,
    current_loop,
    gate_for,
    parse_retry_after,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "ATTEMPT_EXTENSION",
    "ATTEMPT_OVER",
    "DEADLINE_EXTENSION",
    "FIELDS_EXTENSION",
    "QUOTA_PASSED_EXTENSION",
    "QUOTA_WAIT_EXTENSION",
    "RATE_LIMIT_EXTENSION",
    "SENDING_EXTENSION",
    "WRITE_EXTENSION",
    "OriginKey",
    "RateLimitTransport",
    "delivery_of",
    "origin_of",
    "reuse_within",
    "within",
]

#: Request extension: seconds the attempt may take as a whole, from when the inner transport
#: takes it (after any quota wait) to the end of its answer's body, however the bytes trickle.
#: A transport that honours it says so with a true class attribute ``hookapi_attempt``.
ATTEMPT_EXTENSION = "hookapi.attempt_timeout"
#: The text of the timeout error when the attempt's whole bound, not one wait's, ran out.
ATTEMPT_OVER = "The request and its answer did not finish within the attempt's timeout."
#: Request extension: the call's absolute deadline, in ``anyio.current_time()`` seconds; the
#: default pool ends every wait of the attempt by it too.
DEADLINE_EXTENSION = "hookapi.deadline"
#: Request extension set to True once bytes of the request may have reached the network: when
#: the inner transport calls :data:`WRITE_EXTENSION`, or (a transport that never does) as soon
#: as the request is handed to it.
SENDING_EXTENSION = "hookapi.sending"
#: Request extension: a zero-argument callable the inner transport calls right before the
#: first byte of the request is written to the network. A transport that does so says it with
#: a true class attribute ``hookapi_on_write``; any other is assumed to send on entry.
WRITE_EXTENSION = "hookapi.on_write"
#: Request extension: the request's header lines but ``Content-Length``, as bytes ready to send
#: (each line ends in CRLF), built once per client from the same pairs as its headers; the
#: default pool's connections send them as they are, with the length of the in-memory body.
FIELDS_EXTENSION = "hookapi.fields"
#: Request extension: the :class:`~hookapi._quota.QuotaGate` the request is waiting in, present
#: while it waits for the quota and after a wait that ended in an error or a cancellation (so
#: a deadline that ends there is a quota refusal).
QUOTA_WAIT_EXTENSION = "hookapi.quota_wait"
#: Request extension: an optional zero-argument callable called once the quota let the request
#: go, before it is handed to the inner transport (where tracing starts the attempt's span).
QUOTA_PASSED_EXTENSION = "hookapi.quota_passed"
#: Response extension: the :class:`RateLimit` parsed from the answer (or ``None``).
RATE_LIMIT_EXTENSION = "hookapi.rate_limit"

# Failures that happen before a byte of the request can have left: safe to send again.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def reuse_within(keep_alive: bytes) -> float:
    """Seconds an idle connection may be reused, from the server's ``Keep-Alive`` header.

    A server that says ``timeout=N`` closes the connection after N idle seconds; a request sent
    just then would be lost in the close. So the connection is retired a second early (half
    way, for a timeout under two seconds). No readable timeout: no limit of the server's.
    """
    for part in keep_alive.split(b","):
        name, _, value = part.partition(b"=")
        if name.strip().lower() == b"timeout":
            try:
                seconds = float(value.strip().strip(b'"'))
            except ValueError:
                return math.inf
            if not seconds >= 0:  # NaN or negative
                return math.inf
            return seconds - min(1.0, seconds / 2)
    return math.inf


def delivery_of(exc: httpx.TransportError) -> Delivery:
    """Classify a transport failure: could the service have received the request?"""
    if isinstance(exc, _NOT_SENT):
        return Delivery.NOT_SENT
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError):
        return Delivery.NOT_SENT
    return Delivery.UNKNOWN


class _BytesPool(Protocol):
    """What the fast path needs of the default pool (``ConnectionPool``, not imported here)."""

    def bounds_every_wait(self) -> bool: ...

    async def post(
        self,
        origin: tuple[bytes, bytes, int],
        head: Callable[[bytes], bytes],
        body: bytes,
        *,
        attempt: float,
        deadline: float,
        on_write: Callable[[], None],
    ) -> tuple[int, RateLimit | None] | httpx.Response: ...


def _head_builder(prefix: bytes) -> Callable[[bytes], bytes]:
    """What makes a request's bytes from its body: ``prefix``, its length, and the body.

    A closure, not an attribute or a local: what it holds shows in no repr and no frame's
    locals (``prefix`` is the request line, with the real path, and the header lines).
    """

    def head(body: bytes) -> bytes:
        return b"%bContent-Length: %d\r\n\r\n%b" % (prefix, len(body), body)

    return head


class _OnWrite:
    """The write-start signal of one request: marks it as possibly sent."""

    __slots__ = ("_extensions",)

    def __init__(self, extensions: dict[str, Any]) -> None:
        self._extensions = extensions

    def __call__(self) -> None:
        self._extensions[SENDING_EXTENSION] = True


class RateLimitTransport(httpx.AsyncBaseTransport):
    """Paces requests through the hook's shared quota and reveals the secret to ``inner`` only.

    Every request first waits its turn in the hook's first-come-first-served queue (one per
    hook, process and event loop, shared by every client of the hook) for a reservation from
    the quota store. The reservation is *refunded* if no byte of the request can have reached
    the network, and *settled* otherwise: with the answer's headers, or as unconfirmed.

    Args:
        inner: The transport that does the I/O.
        store: Where the hook's quota is kept.
        key: Which hook (the store's key; never the secret).
        real_url: The request URL with the real secret, used only for the inner request.
        own_inner: Whether :meth:`aclose` closes ``inner`` (only if the client created it).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        store: QuotaStore,
        key: HookKey,
        real_url: httpx.URL,
        own_inner: bool,
        fields: bytes | None = None,
    ) -> None:
        self._inner = inner
        self._store = store
        self._key = key
        self.__real_url = real_url
        self._own_inner = own_inner
        self._signals_write = bool(getattr(type(inner), "hookapi_on_write", False))
        self._closed = False
        self._loop: weakref.ref[object] | None = None
        self._gate: QuotaGate | None = None
        # The fast path's pieces: hookapi's own pool (exactly: a subclass may change what a
        # request does), the origin it sends to, and what builds the request's bytes.
        pools = sys.modules.get(f"{__package__}._pool")
        self._pool: _BytesPool | None = (
            inner  # type: ignore[assignment]
            if fields is not None and pools is not None and type(inner) is pools.ConnectionPool
            else None
        )
        port = real_url.port or (443 if real_url.scheme == "https" else 80)
        self._origin = (real_url.raw_scheme, real_url.raw_host, port)
        self.__head = _head_builder(b"POST %b HTTP/1.1\r\n%b" % (real_url.raw_path, fields or b""))

    @property
    def store(self) -> QuotaStore:
        """The store this transport reserves from."""
        return self._store

    def gate(self) -> QuotaGate:
        """The hook's queue and quota on the running event loop (shared process-wide)."""
        loop = current_loop()
        gate = self._gate
        if gate is None or self._loop is None or self._loop() is not loop:
            # Held strongly here: it is what keeps the hook's shared state alive.
            gate = self._gate = gate_for(self._store, self._key)
            self._loop = weakref.ref(loop)
        return gate

    def __repr__(self) -> str:
        return f"<RateLimitTransport inner={type(self._inner).__name__}>"

    def takes_bytes(self) -> bool:
        """Whether :meth:`post` may be used: the fast path, which :meth:`bounds_every_wait` too.

        The client's requests go as bytes to hookapi's own pool, on asyncio, with the
        process's :class:`MemoryQuota` (whose gate answers without a coroutine).
        """
        pool = self._pool
        return pool is not None and type(self._store) is MemoryQuota and pool.bounds_every_wait()

    async def post(
        self, body: bytes, *, attempt: float, deadline: float, extensions: dict[str, Any]
    ) -> tuple[int, RateLimit | None] | httpx.Response:
        """:meth:`handle_async_request` for the client's own request, given as its body.

        The fast path (only when :meth:`takes_bytes`): the quota, the write signal and the
        refund or settlement are the same as there, each without a coroutine, and a complete
        2xx answer comes back as ``(status, rate limit)`` with no request or response object.

        Args:
            body: The message's JSON body.
            attempt: Seconds the attempt may take as a whole.
            deadline: The call's deadline, in loop time.
            extensions: The attempt's state, as a request's extensions would hold it
                (:data:`SENDING_EXTENSION`, :data:`QUOTA_WAIT_EXTENSION`).

        Returns:
            ``(status, rate limit)`` of a complete success; any other answer as a response
            whose body the caller reads and closes.

        Raises:
            QuotaWaitTooLong: The quota cannot come back before the deadline.
            httpx.TransportError: From the pool; the secret is never in its text.
        """
        pool = self._pool
        assert pool is not None
        loop = asyncio.get_running_loop()
        gate = self._gate
        if gate is None or self._loop is None or self._loop() is not loop:
            gate = self.gate()
        reservation = gate.take_now()
        if reservation is None:
            extensions[QUOTA_WAIT_EXTENSION] = gate
            reservation = await gate.acquire(deadline=deadline)
            del extensions[QUOTA_WAIT_EXTENSION]
        try:
            answer = await pool.post(
                self._origin,
                self.__head,
                body,
                attempt=attempt,
                deadline=deadline,
                on_write=_OnWrite(extensions),
            )
        except BaseException as exc:
            sent = bool(extensions.get(SENDING_EXTENSION))
            if isinstance(exc, httpx.TransportError) and delivery_of(exc) is Delivery.NOT_SENT:
                sent = extensions[SENDING_EXTENSION] = False
            # Without a coroutine: a cancellation cannot interrupt it, no shield is needed.
            if sent:
                gate.settle_now(reservation, None, None)
            else:
                gate.refund_now(reservation)
            if isinstance(exc, asyncio.CancelledError):
                # As in handle_async_request: the frames below hold what builds the request.
                raise exc.with_traceback(None)  # noqa: B904  (the same exception, re-raised)
            raise
        if type(answer) is tuple:
            gate.settle_now(reservation, answer[0], answer[1])
            return answer
        assert isinstance(answer, httpx.Response)
        status = answer.status_code
        retry_after = (
            parse_retry_after(answer.headers.get("retry-after")) if status == 429 else None
        )
        gate.settle_now(reservation, status, answer.extensions[RATE_LIMIT_EXTENSION], retry_after)
        return answer

    def bounds_every_wait(self) -> bool:
        """Whether every wait of a request through here ends by its deadline on its own.

        True when the store answers without awaiting (the process's :class:`MemoryQuota`:
        its queue's waits end at the deadline) and the inner transport's connections end
        each wait by the attempt's end and the deadline (the default pool's asyncio path).
        The caller then needs no cancel scope to keep the deadline.
        """
        if type(self._store) is not MemoryQuota:
            return False
        bounds = getattr(self._inner, "bounds_every_wait", None)
        return bounds is not None and bool(bounds())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Wait for the quota, send through the inner transport, and learn from the answer.

        Raises:
            QuotaWaitTooLong: The quota cannot come back before the request's deadline.
            httpx.TransportError: From the inner transport; the secret is never in its text.
        """
        extensions = request.extensions
        deadline = extensions.get(DEADLINE_EXTENSION, math.inf)
        gate = self.gate()
        # Left in place if the wait ends in an error or a cancellation: the caller reads it.
        extensions[QUOTA_WAIT_EXTENSION] = gate
        reservation = await gate.acquire(deadline=deadline)
        del extensions[QUOTA_WAIT_EXTENSION]
        if (passed := extensions.get(QUOTA_PASSED_EXTENSION)) is not None:
            passed()
        if self._signals_write:
            extensions[WRITE_EXTENSION] = _OnWrite(extensions)
        else:
            extensions[SENDING_EXTENSION] = True
        # The secret goes in for the inner call only, and comes out however that call ends.
        public_url = request.url
        request.url = self.__real_url
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            sent = bool(extensions.get(SENDING_EXTENSION))
            if isinstance(exc, httpx.TransportError) and delivery_of(exc) is Delivery.NOT_SENT:
                sent = extensions[SENDING_EXTENSION] = False
            # Shielded: a cancelled request must still give its slot back, or count it.
            with anyio.CancelScope(shield=True):
                if sent:
                    await gate.settle(reservation, None)
                else:
                    await gate.refund(reservation)
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                # Its traceback below this frame runs through the inner transport's frames,
                # whose locals hold the real URL (and, in httpcore's proxy connections, the
                # proxy's credentials): the cancellation goes on from here without them.
                raise exc.with_traceback(None)  # noqa: B904  (the same exception, re-raised)
            raise
        finally:
            request.url = public_url
        # hookapi's own connections parse the rate-limit headers as they arrive; any other
        # transport's answer is read here.
        answer = response.extensions
        rate_limit = (
            answer[RATE_LIMIT_EXTENSION]
            if RATE_LIMIT_EXTENSION in answer
            else RateLimit.from_headers(response.headers)
        )
        status = response.status_code
        retry_after = (
            parse_retry_after(response.headers.get("retry-after")) if status == 429 else None
        )
        await gate.settle(
            reservation,
            QuotaAnswer(status_code=status, rate_limit=rate_limit, retry_after=retry_after),
        )
        if RATE_LIMIT_EXTENSION not in answer:
            response.extensions = {**answer, RATE_LIMIT_EXTENSION: rate_limit}
        return response

    async def aclose(self) -> None:
        """Close the inner transport if this layer owns it; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._own_inner:
            await self._inner.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


#: (scheme, host, port): what the pool's connections, idle stacks and limits are keyed by.
OriginKey = tuple[bytes, bytes, int]


def origin_of(request: httpx.Request) -> OriginKey:
    """(scheme, host, port) of ``request``: all a connection is chosen by."""
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.raw_scheme, url.raw_host, port)


def within(timeout: float | None, ends: float) -> float | None:
    """``timeout``, shortened to what is left before the loop time ``ends``."""
    if ends == math.inf:
        return timeout
    left = max(0.0, ends - anyio.current_time())
    return left if timeout is None else min(timeout, left)
