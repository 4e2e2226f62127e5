"""The httpx transport layer: throttle before sending, put the secret in last, read the quota.

:class:`RateLimitTransport` wraps any inner ``httpx.AsyncBaseTransport``. The requests it
receives carry ``***`` where the secret goes; only the request handed to the inner transport
holds the real URL, so nothing above this layer (loggers, errors, reprs) can see the secret.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import httpx

from .._exceptions import Delivery
from .._quota import Pacer, RateLimit, parse_retry_after

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "DEADLINE_EXTENSION",
    "RATE_LIMIT_EXTENSION",
    "SENDING_EXTENSION",
    "RateLimitTransport",
    "delivery_of",
]

#: Request extension: the call's absolute deadline, in ``anyio.current_time()`` seconds.
DEADLINE_EXTENSION = "hookapi.deadline"
#: Request extension set to True once the request is handed to the inner transport.
SENDING_EXTENSION = "hookapi.sending"
#: Response extension: the :class:`RateLimit` parsed from the answer (or ``None``).
RATE_LIMIT_EXTENSION = "hookapi.rate_limit"

# Failures that happen before a byte of the request can have left: safe to send again.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def delivery_of(exc: httpx.TransportError) -> Delivery:
    """Classify a transport failure: could the service have received the request?"""
    if isinstance(exc, _NOT_SENT):
        return Delivery.NOT_SENT
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError):
        return Delivery.NOT_SENT
    return Delivery.UNKNOWN


class RateLimitTransport(httpx.AsyncBaseTransport):
    """Throttles requests from a shared :class:`Pacer` and reveals the secret to ``inner`` only.

    Args:
        inner: The transport that does the I/O.
        pacer: The pacing state of the hook.
        real_url: The request URL with the real secret, used only for the inner request.
        own_inner: Whether :meth:`aclose` closes ``inner`` (only if the client created it).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        pacer: Pacer,
        real_url: httpx.URL,
        own_inner: bool,
    ) -> None:
        self._inner = inner
        self._pacer = pacer
        self.__real_url = real_url
        self._own_inner = own_inner
        self._closed = False

    @property
    def pacer(self) -> Pacer:
        """The pacing state this transport reserves from."""
        return self._pacer

    def __repr__(self) -> str:
        return f"<RateLimitTransport inner={type(self._inner).__name__}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Wait for the quota, send through the inner transport, and learn from the answer.

        Raises:
            QuotaWaitTooLong: The quota cannot come back before the request's deadline.
            httpx.TransportError: From the inner transport; the secret is never in its text.
        """
        deadline = request.extensions.get(DEADLINE_EXTENSION, math.inf)
        pacer = self._pacer
        ticket = pacer.try_reserve() or await pacer.acquire(deadline=deadline)
        request.extensions[SENDING_EXTENSION] = True
        # The secret goes in for the inner call only, and comes out however that call ends.
        public_url = request.url
        request.url = self.__real_url
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            pacer.release(ticket, sent=delivery_of(exc) is not Delivery.NOT_SENT)
            raise
        except BaseException:
            # Cancelled or crashed mid-request: it may have been sent.
            pacer.release(ticket, sent=True)
            raise
        finally:
            request.url = public_url
        rate_limit = RateLimit.from_headers(response.headers)
        refused = response.status_code == 429
        pacer.settle(
            ticket,
            rate_limit,
            refused=refused,
            retry_after=parse_retry_after(response.headers.get("retry-after")) if refused else None,
        )
        response.extensions = {**response.extensions, RATE_LIMIT_EXTENSION: rate_limit}
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
