"""FastAPI and Starlette: one client per app, a dependency for handlers, errors as answers.

Install with ``pip install "hookapi[fastapi]"``. Three pieces, each usable alone:

- :func:`hook_lifespan` opens one :class:`~hookapi.AsyncHookClient` when the app starts and
  closes it when the app stops, around the app's own lifespan if it has one, and hands it to
  handlers through the lifespan state (``request.state.hook_client``), as Starlette documents;
- :data:`AsyncHookClientDep`, ``Annotated[AsyncHookClient, Depends(get_hook_client)]``, gives a
  handler that client; with ``hook_lifespan(outbox=True)`` the app also gets one
  :class:`~hookapi.Outbox`, and :data:`OutboxDep` gives it to handlers, which ``put`` and
  return at once while the outbox delivers, in order, and drains on shutdown;
- :func:`add_exception_handlers` answers hookapi's errors in the terms of the app's caller:
  a status that says what went wrong (422, 429 with ``Retry-After``, 500, 502, 503, 504) and a
  short code, never the upstream URL, host, hook id or answer; the whole error is logged.

Example:
    >>> from fastapi import FastAPI
    >>> app = FastAPI(lifespan=hook_lifespan())
    >>> add_exception_handlers(app)
    >>> @app.post("/notify")
    ... async def notify(text: str, hook: AsyncHookClientDep) -> dict[str, int]:
    ...     result = await hook.post_message(text, deadline=5.0)
    ...     return {"attempts": result.attempts}
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar, Unpack

try:
    from fastapi import Depends
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse
except ImportError as exc:  # pragma: no cover  (tested in a subprocess without FastAPI)
    raise ImportError(
        f"hookapi.fastapi needs FastAPI and Starlette ({exc.name} is missing): "
        'pip install "hookapi[fastapi]"'
    ) from exc

from ._client import ENV_VAR, AsyncHookClient, ClientOptions
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ClientClosedError,
    Delivery,
    HookAPIError,
    InsecureURLError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    QuotaUnavailableError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from .outbox import (
    MessageDroppedError,
    Outbox,
    OutboxClosedError,
    OutboxFullError,
    StoreUnavailableError,
)

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "OUTBOX_STATE_KEY",
    "STATE_KEY",
    "AsyncHookClientDep",
    "OutboxDep",
    "add_exception_handlers",
    "error_response",
    "get_hook_client",
    "get_outbox",
    "hook_lifespan",
]

#: The lifespan state key (and so the ``request.state`` attribute) holding the client.
STATE_KEY: Final = "hook_client"
#: The lifespan state key holding the outbox, with ``hook_lifespan(outbox=...)``.
OUTBOX_STATE_KEY: Final = "hook_outbox"
#: ``Retry-After`` seconds sent with a 429 when the service named no wait.
DEFAULT_RETRY_AFTER: Final = 60

_logger = logging.getLogger("hookapi")

_App = TypeVar("_App", bound=Starlette)
Lifespan = Callable[[_App], AbstractAsyncContextManager[Mapping[str, Any] | None]]


def hook_lifespan(
    lifespan: Lifespan[_App] | None = None,
    *,
    url: str | None = None,
    env_var: str = ENV_VAR,
    outbox: bool | Callable[[AsyncHookClient], Outbox] = False,
    **options: Unpack[ClientOptions],
) -> Callable[[_App], AbstractAsyncContextManager[dict[str, Any]]]:
    """A lifespan that opens one client for the app, around the app's own ``lifespan``.

    The client is built when the app starts (so a bad or missing URL stops the start, with the
    reason), from ``url`` if given, else from the environment variable ``env_var``. It is
    opened before the app's own lifespan runs and closed after it has finished, and it joins
    the state that lifespan yields under :data:`STATE_KEY`.

    With ``outbox``, an :class:`~hookapi.Outbox` on that client joins the state under
    :data:`OUTBOX_STATE_KEY`: it starts before the app's own lifespan and, when the app stops,
    drains for its ``drain_timeout`` (what is left stays in a durable store for the next start)
    before the client closes.

    Args:
        lifespan: The app's own lifespan, if it has one; what it yields (a mapping, or
            nothing) is kept in the state.
        url: The hook URL; default: read ``env_var`` when the app starts.
        env_var: The environment variable holding the hook URL.
        outbox: ``True`` for an ``Outbox(client)`` with its defaults (in memory), or a factory
            such as ``lambda client: Outbox(client, store="outbox.sqlite")``.
        **options: Client options (:class:`~hookapi.ClientOptions`), such as ``timeout``.

    Returns:
        A lifespan for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``.

    Raises:
        InvalidInputError: At start-up, when the URL is missing or invalid.
        RuntimeError: At start-up, when the app's own lifespan yields :data:`STATE_KEY` or
            :data:`OUTBOX_STATE_KEY` too.
    """

    @asynccontextmanager
    async def run(app: _App) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            if url is not None:
                client = AsyncHookClient.from_url(url, **options)
            else:
                client = AsyncHookClient.from_env(env_var=env_var, **options)
            await stack.enter_async_context(client)
            state: dict[str, Any] = {}
            if outbox is not False:
                made = Outbox(client) if outbox is True else outbox(client)
                if not isinstance(made, Outbox):
                    raise InvalidInputError(
                        f"hook_lifespan's outbox factory returned {type(made).__name__}, "
                        "not an Outbox."
                    )
                state[OUTBOX_STATE_KEY] = await stack.enter_async_context(made)
            own: Mapping[str, Any] | None = None
            if lifespan is not None:
                own = await stack.enter_async_context(lifespan(app))
            own = own or {}
            for key in (STATE_KEY, OUTBOX_STATE_KEY):
                if key in own:
                    raise RuntimeError(
                        f"The app's own lifespan yields {key!r}, which hook_lifespan sets."
                    )
            state.update(own)
            state[STATE_KEY] = client
            yield state

    return run


def get_hook_client(connection: HTTPConnection) -> AsyncHookClient:
    """The app's client, from the lifespan state (a FastAPI dependency).

    Raises:
        RuntimeError: The app was not started with :func:`hook_lifespan`.
    """
    client = getattr(connection.state, STATE_KEY, None)
    if not isinstance(client, AsyncHookClient):
        raise RuntimeError(  # noqa: TRY004  (a missing lifespan, not a wrong argument)
            "No hook client in the lifespan state: create the app with "
            "lifespan=hook_lifespan() (and run it with its lifespan, as TestClient does "
            "inside a with block)."
        )
    return client


#: A handler parameter annotated with this receives the app's client.
AsyncHookClientDep = Annotated[AsyncHookClient, Depends(get_hook_client)]


def get_outbox(connection: HTTPConnection) -> Outbox:
    """The app's outbox, from the lifespan state (a FastAPI dependency).

    Raises:
        RuntimeError: The app was not started with ``hook_lifespan(outbox=...)``.
    """
    outbox = getattr(connection.state, OUTBOX_STATE_KEY, None)
    if not isinstance(outbox, Outbox):
        raise RuntimeError(  # noqa: TRY004  (a missing lifespan, not a wrong argument)
            "No outbox in the lifespan state: create the app with "
            "lifespan=hook_lifespan(outbox=True) (or an Outbox factory)."
        )
    return outbox


#: A handler parameter annotated with this receives the app's outbox.
OutboxDep = Annotated[Outbox, Depends(get_outbox)]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Answer:
    """What the app's caller is told about one kind of failure, in the caller's terms."""

    status: int
    code: str
    detail: str


_UNAVAILABLE = _Answer(
    status=503,
    code="hook_unavailable",
    detail="The chat service is unavailable; try again later.",
)
_FAILED = _Answer(
    status=502,
    code="hook_failed",
    detail="The chat service failed to post the message; try again later.",
)
_INTERNAL = _Answer(
    status=500,
    code="internal_error",
    detail="The message could not be posted because of an error in this service.",
)
# Most specific class first: the first match answers. Nothing here comes from the error's
# text, which holds the upstream URL, its host, the hook id and the upstream's own answer.
_ANSWERS: Final[tuple[tuple[type[HookAPIError] | tuple[type[HookAPIError], ...], _Answer], ...]] = (
    (
        RateLimitError,
        _Answer(
            status=429,
            code="rate_limited",
            detail="Too many messages were sent to the chat service; try again later.",
        ),
    ),
    ((ServiceUnavailableError, QuotaUnavailableError), _UNAVAILABLE),
    (
        (AuthenticationError, PermissionDeniedError, NotFoundError, InsecureURLError),
        _Answer(
            status=500,
            code="hook_misconfigured",
            detail="This service's connection to the chat service is misconfigured.",
        ),
    ),
    (ServerError, _FAILED),
    (
        APIStatusError,
        _Answer(
            status=502,
            code="hook_refused",
            detail="The chat service refused the message.",
        ),
    ),
    (
        APITimeoutError,
        _Answer(
            status=504,
            code="hook_timeout",
            detail="The chat service did not answer in time; try again later.",
        ),
    ),
    (
        APIConnectionError,
        _Answer(
            status=502,
            code="hook_unreachable",
            detail="The chat service could not be reached; try again later.",
        ),
    ),
    (APIError, _FAILED),
    (
        (ClientClosedError, OutboxClosedError),
        _Answer(
            status=503,
            code="shutting_down",
            detail="This service is shutting down; try again later.",
        ),
    ),
    (
        OutboxFullError,
        _Answer(
            status=503,
            code="outbox_full",
            detail="Too many messages are waiting to be posted; try again later.",
        ),
    ),
    (
        StoreUnavailableError,
        _Answer(
            status=503,
            code="outbox_unavailable",
            detail="The queue of messages to post is unavailable; try again later.",
        ),
    ),
    (
        MessageDroppedError,
        _Answer(
            status=503,
            code="message_dropped",
            detail="The message was given up before it could be posted; send it again.",
        ),
    ),
)


def _answer(error: HookAPIError) -> _Answer:
    for types, answer in _ANSWERS:
        if isinstance(error, types):
            return answer
    return _INTERNAL


def _retry_after(error: HookAPIError) -> int | None:
    """Seconds the caller should wait, where the service (or the outbox) makes it known."""
    if isinstance(error, RateLimitError):
        wait = error.retry_after
        return DEFAULT_RETRY_AFTER if wait is None else math.ceil(wait)
    if isinstance(error, ServiceUnavailableError) and error.retry_after is not None:
        return math.ceil(error.retry_after)
    if isinstance(error, OutboxFullError):
        return DEFAULT_RETRY_AFTER
    return None


def _details(error: HookAPIError) -> dict[str, Any]:
    """What ``expose_details`` adds: the error as the library tells it (secret redacted)."""
    details: dict[str, Any] = {
        "type": type(error).__name__,
        "message": str(error),
        "attempts": error.attempts,
    }
    if isinstance(error, APIError):
        details["url"] = error.url
    if isinstance(error, APIStatusError):
        details["status_code"] = error.status_code
        details["body"] = error.body
    return details


def _validation_body(error: InvalidInputError) -> dict[str, Any]:
    # FastAPI's own RequestValidationError shape, so that a caller parses both alike.
    return {
        "detail": [{"type": "value_error", "loc": ["body"], "msg": error.message, "input": None}]
    }


def error_response(error: HookAPIError, *, expose_details: bool = False) -> JSONResponse:
    """The answer for a hookapi error, in the terms of the app's caller, and a log record.

    The caller of the app learns what happened and whether to try again, never where the app
    posts: the body holds no upstream URL, host, hook id, nor anything the upstream (or a
    proxy in front of it) answered. The status says whose fault it was:

    - :class:`~hookapi.InvalidInputError` (but :class:`~hookapi.InsecureURLError`, below):
      422, the caller's input cannot be posted, in the
      shape of FastAPI's own validation errors (``{"detail": [{"type", "loc", "msg",
      "input"}]}``);
    - :class:`~hookapi.RateLimitError`: 429 ``rate_limited``, with ``Retry-After`` (the
      service's wait rounded up, or :data:`DEFAULT_RETRY_AFTER` when it named none);
    - :class:`~hookapi.ServiceUnavailableError` (with the service's ``Retry-After``, if any)
      and :class:`~hookapi.QuotaUnavailableError`: 503 ``hook_unavailable``;
    - :class:`~hookapi.APITimeoutError`: 504 ``hook_timeout``;
    - :class:`~hookapi.APIConnectionError`: 502 ``hook_unreachable``;
    - :class:`~hookapi.ServerError` (500 and any other 5xx), and any other
      :class:`~hookapi.APIError`: 502 ``hook_failed``;
    - :class:`~hookapi.AuthenticationError`, :class:`~hookapi.PermissionDeniedError`,
      :class:`~hookapi.NotFoundError`, :class:`~hookapi.InsecureURLError`: 500
      ``hook_misconfigured`` (the app's hook URL is wrong: trying again will not help);
    - any other :class:`~hookapi.APIStatusError` (400, 418...): 502 ``hook_refused``;
    - :class:`~hookapi.ClientClosedError`, :class:`~hookapi.OutboxClosedError`: 503
      ``shutting_down``;
    - :class:`~hookapi.OutboxFullError`: 503 ``outbox_full``, ``Retry-After``
      :data:`DEFAULT_RETRY_AFTER`;
    - :class:`~hookapi.MessageDroppedError`: 503 ``message_dropped``;
    - any other :class:`~hookapi.HookAPIError` (a store error, say): 500 ``internal_error``.

    Other bodies are ``{"detail": ..., "error": ..., "delivery": ...}``: a sentence, the code
    above, and whether the message may have been posted (``not_sent``, ``rejected`` or
    ``unknown``). The whole error, redacted as every hookapi error is, goes to the
    ``hookapi`` logger: at WARNING, or INFO for the caller's own input.

    Args:
        error: The error a handler let through.
        expose_details: Add ``"hook_error"`` with the error's class, its text, and for a
            service's answer the redacted URL, status and body: for development, where the
            caller is the app's own author. The secret is never shown either way.
    """
    # An insecure hook URL is the app's own configuration, not the caller's input.
    if isinstance(error, InvalidInputError) and not isinstance(error, InsecureURLError):
        _logger.info("Answered 422 for the caller's input: %s: %s", type(error).__name__, error)
        return JSONResponse(_validation_body(error), status_code=422)
    answer = _answer(error)
    _logger.warning(
        "Answered %d %s for %s: %s",
        answer.status,
        answer.code,
        type(error).__name__,
        error,
        extra={"hookapi_event": "fastapi_error"},
    )
    headers: dict[str, str] = {}
    wait = _retry_after(error)
    if wait is not None:
        headers["Retry-After"] = str(wait)
    detail = answer.detail
    if error.delivery is Delivery.UNKNOWN:  # sending again may post it twice
        detail = f"{detail} The message may or may not have been posted."
    body: dict[str, Any] = {
        "detail": detail,
        "error": answer.code,
        "delivery": error.delivery.value,
    }
    if expose_details:
        body["hook_error"] = _details(error)
    return JSONResponse(body, status_code=answer.status, headers=headers)


def add_exception_handlers(app: Starlette, *, expose_details: bool = False) -> None:
    """Answer every :class:`~hookapi.HookAPIError` a handler lets through (see error_response).

    Args:
        app: The FastAPI or Starlette app.
        expose_details: Show the redacted error in the body too (for development only; see
            :func:`error_response`).
    """

    async def handle(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HookAPIError)  # registered for HookAPIError only
        return error_response(error, expose_details=expose_details)

    app.add_exception_handler(HookAPIError, handle)
