"""The httpx transport layer: throttle before sending, put the secret in last, read the quota.

:class:`RateLimitTransport` wraps any inner ``httpx.AsyncBaseTransport``. The requests it
receives carry ``***`` where the secret goes; only the request handed to the inner transport
holds the real URL, so nothing above this layer (loggers, errors, reprs) can see the secret.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

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
    "RateLimitTransport",
    "delivery_of",
    "reuse_within",
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
