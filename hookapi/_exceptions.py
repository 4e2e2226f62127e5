"""The error tree, and the mapping from an HTTP status to its class.

Every error the SDK raises derives from :class:`HookAPIError`::

    HookAPIError
    ├── InvalidInputError            bad input, refused before any request (also a ValueError)
    │   └── InsecureURLError         plain http:// to a host that is not loopback
    ├── ClientClosedError            the client was used after aclose() (also a RuntimeError)
    ├── WrongEventLoopError          the client was used on another event loop (a RuntimeError)
    ├── QuotaUnavailableError        the shared quota (Redis) is unreachable; nothing was sent
    └── APIError                     something went wrong talking to the service
        ├── APIConnectionError       no answer: not sent, or sent and the answer was lost
        │   └── APITimeoutError
        └── APIStatusError           the service (or a proxy) answered with an error status
            ├── BadRequestError            400
            ├── AuthenticationError        401
            ├── PermissionDeniedError      403
            ├── NotFoundError              404
            ├── RateLimitError             429, or the client's own refusal to exceed the quota
            └── ServerError                5xx
                ├── InternalServerError    500
                └── ServiceUnavailableError 503

Each error says whether the message may have been delivered (:class:`Delivery`) and how many
attempts were made, so a caller never has to guess whether to send again.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._quota import RateLimit

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "Delivery",
    "HookAPIError",
    "InsecureURLError",
    "InternalServerError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaUnavailableError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "WrongEventLoopError",
    "builds",
    "status_error_class",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Delivery(enum.StrEnum):
    """What is known about a message whose post failed.

    Attributes:
        NOT_SENT: The request never reached the service; sending again cannot duplicate it.
        REJECTED: The service answered and did not post the message.
        UNKNOWN: The request may have reached the service and the answer was lost; sending
            again may post the message twice.
    """

    NOT_SENT = "not_sent"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    def describe(self) -> str:
        """A sentence for error messages."""
        return _DELIVERY_TEXT[self]


_DELIVERY_TEXT = {
    Delivery.NOT_SENT: "The message was not sent.",
    Delivery.REJECTED: "The message was not posted.",
    Delivery.UNKNOWN: "The message may or may not have been posted.",
}


class HookAPIError(Exception):
    """Base class of every error raised by hookapi.

    Attributes:
        attempts: How many requests of this call may have reached the service (0 when none
            did: a local quota refusal, or failures to connect).
        delivery: Whether the message may have been delivered.
    """

    delivery: Delivery
    attempts: int
    #: Whether the text speaks of a message; not for an error raised while a client was
    #: being built, since there is no message then.
    concerns_message: bool = True

    def __init__(
        self, message: str, *, delivery: Delivery = Delivery.NOT_SENT, attempts: int = 0
    ) -> None:
        super().__init__(message)
        self.delivery = delivery
        self.attempts = attempts

    @property
    def message(self) -> str:
        """The error's own sentence, without the attempt and delivery summary."""
        return str(self.args[0])

    def __str__(self) -> str:
        if not self.concerns_message:
            return self.message
        if self.attempts == 0:
            return f"{self.message} {self.delivery.describe()}"
        plural = "" if self.attempts == 1 else "s"
        return f"{self.message} ({self.attempts} attempt{plural}) {self.delivery.describe()}"


class InvalidInputError(HookAPIError, ValueError):
    """An argument was refused before any request was made (also a :class:`ValueError`)."""


class InsecureURLError(InvalidInputError):
    """Plain ``http://`` to a host that is not loopback, refused to keep the secret off the wire.

    Its own class so that a caller with other words for the way out (the command line's
    ``--allow-insecure-http``) can say so.

    Attributes:
        netloc: The host and port the URL named (never the path, which holds the secret).
    """

    def __init__(self, message: str, *, netloc: str) -> None:
        super().__init__(message)
        self.netloc = netloc


class ClientClosedError(HookAPIError, RuntimeError):
    """The client was used after :meth:`~hookapi.AsyncHookClient.aclose`."""


class WrongEventLoopError(HookAPIError, RuntimeError):
    """A client (or a shared pool) was used on another event loop than the one it first ran on.

    Its connections and locks belong to that first loop; nothing was sent. Create the client
    inside the loop that uses it, or make one per loop.
    """


class QuotaUnavailableError(HookAPIError):
    """The shared quota store could not be reached, and it is set to refuse rather than guess.

    Raised by a :class:`~hookapi.RedisQuota` made with ``on_unavailable="raise"`` when Redis
    is down or slower than its timeout; the message was not sent (``delivery`` is
    ``NOT_SENT``), so sending it again later cannot post it twice.
    """


class APIError(HookAPIError):
    """Talking to the service failed.

    Attributes:
        url: The request URL with the secret replaced by ``***``.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        delivery: Delivery = Delivery.NOT_SENT,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, delivery=delivery, attempts=attempts)
        self.url = url


class APIConnectionError(APIError):
    """No answer was received: the connection failed, or broke before the answer arrived."""


class APITimeoutError(APIConnectionError):
    """The request, or the whole call's deadline, timed out."""


class APIStatusError(APIError):
    """The service answered with a status that is not a success.

    Attributes:
        status_code: The HTTP status.
        error: The ``error`` field of a JSON error body, if any.
        error_description: The ``error_description`` field, if any.
        error_message: The ``message`` field, if any.
        body: The start of the answer's body (bounded, secret removed).
        location: The answer's ``Location`` header, secret removed (where a redirect pointed:
            the client does not follow it), if any.
        www_authenticate: The answer's ``WWW-Authenticate`` header, secret removed, if any.
        rate_limit: The rate-limit headers of that answer, if it had any.
        retry_after: Seconds the answer asked to wait (``Retry-After``), if any.
    """

    default_status: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status_code: int,
        error: str | None = None,
        error_description: str | None = None,
        error_message: str | None = None,
        body: str = "",
        location: str | None = None,
        www_authenticate: str | None = None,
        rate_limit: RateLimit | None = None,
        retry_after: float | None = None,
        delivery: Delivery = Delivery.REJECTED,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, url=url, delivery=delivery, attempts=attempts)
        self.status_code = status_code
        self.error = error
        self.error_description = error_description
        self.error_message = error_message
        self.body = body
        self.location = location
        self.www_authenticate = www_authenticate
        self.rate_limit = rate_limit
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400: the service found the request invalid."""

    default_status = 400


class AuthenticationError(APIStatusError):
    """401: wrong hook id or secret."""

    default_status = 401


class PermissionDeniedError(APIStatusError):
    """403: the bot account may not do this."""

    default_status = 403


class NotFoundError(APIStatusError):
    """404: no such hook or resource."""

    default_status = 404


class RateLimitError(APIStatusError):
    """429: over quota, from the service or from the client itself.

    Attributes:
        local: True when the client refused without sending, because the known quota
            could not come back before the call's deadline; ``status_code`` is then 429 too.
    """

    default_status = 429
    local: bool = False


class ServerError(APIStatusError):
    """5xx: the service failed."""


class InternalServerError(ServerError):
    """500: the service failed; trying again later may work."""

    default_status = 500


class ServiceUnavailableError(ServerError):
    """503: the service is offline for maintenance; trying again later may work."""

    default_status = 503


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
    500: InternalServerError,
    503: ServiceUnavailableError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """Return the error class for an HTTP status that is not a success."""
    cls = _BY_STATUS.get(status_code)
    if cls is not None:
        return cls
    return ServerError if status_code >= 500 else APIStatusError


def builds(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Mark the input errors ``func`` raises as construction errors, which concern no message.

    For constructors and factories: a bad option is not a message that was not sent, so the
    error's text says nothing about a message.
    """

    @functools.wraps(func)
    def build(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except InvalidInputError as exc:
            exc.concerns_message = False
            raise

    return build
