"""FastAPI and Starlette: one client per app, a dependency for handlers, errors as answers.

Install with ``pip install "hookapi[fastapi]"``. Three pieces, each usable alone:

- :func:`hook_lifespan` opens one :class:`~hookapi.AsyncHookClient` when the app starts and
  closes it when the app stops, around the app's own lifespan if it has one, and hands it to
  handlers through the lifespan state (``request.state.hook_client``), as Starlette documents;
- :data:`AsyncHookClientDep`, ``Annotated[AsyncHookClient, Depends(get_hook_client)]``, gives a
  handler that client; with ``hook_lifespan(outbox=True)`` the app also gets one
  :class:`~hookapi.Outbox`, and :data:`OutboxDep` gives it to handlers, which ``put`` and
  return at once while the outbox delivers, in order, and drains on shutdown;
- :func:`add_exception_handlers` answers hookapi's errors with the status that says what went
  wrong (422, 429 with ``Retry-After``, 502, 503, 504), never showing the secret.

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

import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
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
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    HookAPIError,
    InvalidInputError,
    RateLimitError,
    ServiceUnavailableError,
)
from .outbox import Outbox, OutboxClosedError, OutboxFullError

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


def error_response(error: HookAPIError) -> JSONResponse:
    """The answer for a hookapi error: a status that says whose fault it was, and why.

    - :class:`~hookapi.InvalidInputError`: 422, the caller's input cannot be posted;
    - :class:`~hookapi.RateLimitError`: 429, over quota, with ``Retry-After`` (the service's
      wait rounded up, or :data:`DEFAULT_RETRY_AFTER` when it named none);
    - :class:`~hookapi.ServiceUnavailableError`: 503, the service is down for maintenance
      (with its ``Retry-After``, if any);
    - :class:`~hookapi.APITimeoutError`: 504, the service did not answer in time;
    - :class:`~hookapi.APIConnectionError` and any other :class:`~hookapi.APIStatusError`
      (401, 404, 500...): 502, the service could not be reached or refused;
    - :class:`~hookapi.ClientClosedError` and :class:`~hookapi.OutboxClosedError`: 503, the
      app is shutting down;
    - :class:`~hookapi.OutboxFullError`: 503 with ``Retry-After`` (:data:`DEFAULT_RETRY_AFTER`),
      the outbox holds as many messages as it may;
    - any other :class:`~hookapi.HookAPIError`: 500.

    The body is ``{"detail": ..., "error": ..., "delivery": ...}``: the error's text (which
    never holds the secret), its class name, and whether the message may have been posted.
    """
    status = 500
    headers: dict[str, str] = {}
    if isinstance(error, InvalidInputError):
        status = 422
    elif isinstance(error, RateLimitError):
        status = 429
        wait = error.retry_after
        headers["Retry-After"] = str(DEFAULT_RETRY_AFTER if wait is None else math.ceil(wait))
    elif isinstance(error, ServiceUnavailableError):
        status = 503
        if error.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(error.retry_after))
    elif isinstance(error, APITimeoutError):
        status = 504
    elif isinstance(error, APIConnectionError | APIStatusError):
        status = 502
    elif isinstance(error, ClientClosedError | OutboxClosedError):
        status = 503
    elif isinstance(error, OutboxFullError):
        status = 503
        headers["Retry-After"] = str(DEFAULT_RETRY_AFTER)
    body = {"detail": str(error), "error": type(error).__name__, "delivery": error.delivery.value}
    return JSONResponse(body, status_code=status, headers=headers)


async def _handle(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HookAPIError)  # registered for HookAPIError only
    return error_response(error)


def add_exception_handlers(app: Starlette) -> None:
    """Answer every :class:`~hookapi.HookAPIError` a handler lets through (see error_response)."""
    app.add_exception_handler(HookAPIError, _handle)
