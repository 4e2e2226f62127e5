"""The Hook API as an ASGI 3 application: routing, validation, quota, faults and answers.

One request runs this pipeline, in this order, so that each answer is the one the real
service's layers would give: route (404, 405), authenticate (401), front faults (a proxy or
maintenance page), the limiter (429), faults behind the limiter, validation (400), and the post
(200). The path holds the hook secret, so nothing here logs a path unredacted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, TypeAlias

import anyio

from ._faults import is_front
from ._models import Fault, QuotaState
from ._state import State

__all__ = [
    "DROP_EXTENSION",
    "ASGIApp",
    "ConnectionDropped",
    "HookAPIApp",
    "Receive",
    "Scope",
    "Send",
    "redact_path",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A server that puts this key in ``scope["extensions"]`` drops the connection, without an
#: answer, when the app raises :class:`ConnectionDropped` before starting one.
DROP_EXTENSION: Final = "hookapi.connection_drop"

logger = logging.getLogger("hookapi.emulator")

_ERROR_CODES: Final = {
    400: "invalid_request",
    401: "access_denied",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
    500: "internal_error",
    503: "maintenance",
}
_JSON: Final = b"application/json"


class ConnectionDropped(Exception):
    """Raised by the app so that the server closes the connection instead of answering."""


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


@dataclass(slots=True, kw_only=True)
class _Answer:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]
    delay: float = 0.0
    drop: bool = False


def redact_path(path: str, hook_ids: Iterable[str]) -> str:
    """``path`` with every segment but known hook ids and ``message`` shown as ``***``.

    Example:
        >>> redact_path("/abc/s3cr3t/message", {"abc"})
        '/abc/***/message'
    """
    known = set(hook_ids)
    return "/".join(
        part if not part or part == "message" or part in known else "***"
        for part in path.split("/")
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status fail_next allows but the standard does not name, such as 599
        return "Error"


def _answer(
    status: int,
    quota: QuotaState | None,
    *,
    description: str = "",
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> _Answer:
    """A JSON error answer shaped like the service's documented 401 body."""
    phrase = _phrase(status)
    document = {
        "error": _ERROR_CODES.get(status, "error"),
        "error_description": description or f"{phrase}.",
        "message": phrase,
    }
    body = json.dumps(document).encode()
    headers = [(b"content-type", _JSON)]
    headers += quota.headers() if quota is not None else []
    return _Answer(status=status, body=body, headers=[*headers, *extra])


def _proxy_page(status: int) -> _Answer:
    """An error page from something in front of the service: HTML, no rate-limit headers."""
    title = f"{status} {_phrase(status)}"
    body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return _Answer(status=status, body=body.encode(), headers=[(b"content-type", b"text/html")])


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _content_type_problem(value: bytes | None) -> str | None:
    if value is None:
        return "The Content-Type header must be application/json."
    media, *params = value.decode("latin-1").split(";")
    if media.strip().lower() != "application/json":
        return "The Content-Type header must be application/json."
    for param in params:
        name, _, charset = param.partition("=")
        if name.strip().lower() == "charset" and charset.strip(' "').lower() not in (
            "utf-8",
            "utf8",
        ):
            return "A JSON body must be encoded as UTF-8."
    return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


#: Arrays and objects nested deeper than this are refused as not valid JSON. The limit is the
#: emulator's own, so that its answer does not depend on the interpreter's recursion limit
#: (3.13's parser accepts nesting that 3.11's refuses).
MAX_JSON_DEPTH: Final = 64


def _nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, ignoring brackets in strings."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot be too deep: skip the scan (every ordinary body)
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _message_text(body: bytes) -> tuple[str, str | None]:
    """The ``message`` of a request body, or ``("", problem)`` when there is none to post."""
    try:
        text = body.decode("utf-8")
        if _nesting_depth(text) > MAX_JSON_DEPTH:
            return "", "The body is not valid JSON."
        document = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "", "The body is not valid JSON."
    if not isinstance(document, dict):
        return "", "The body must be a JSON object."
    if "message" not in document:
        return "", 'The body has no "message" field.'
    text = document["message"]
    if not isinstance(text, str):
        return "", 'The "message" field must be a string.'
    if not text.strip():
        return "", 'The "message" field must not be empty or only whitespace.'
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "", 'The "message" field holds an unpaired surrogate.'
    return text, None


def _validate(scope: Scope, body: bytes | None, limit: int) -> tuple[str, str | None]:
    """The text to post, or ``("", problem)`` when the request is invalid."""
    if body is None:
        return "", f"The body is larger than {limit} bytes."
    problem = _content_type_problem(_header(scope, b"content-type"))
    if problem is not None:
        return "", problem
    return _message_text(body)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class HookAPIApp:
    """The ASGI application of one emulator; every request reads and changes its state."""

    def __init__(self, state: State) -> None:
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (``http`` requests and the ``lifespan`` protocol)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"The Hook API emulator serves HTTP only, not {scope['type']!r}.")
        try:
            answer = await self._handle(scope, receive)
        except _ClientGone:
            return
        wait = self._state.latency + answer.delay
        if wait:
            await anyio.sleep(wait)
        where = redact_path(scope["path"], self._state.hooks)
        outcome = "connection dropped" if answer.drop else answer.status
        logger.debug("%s %s -> %s", scope["method"], where, outcome)
        if answer.drop:
            await _drop(scope, send, answer)
        self._state.status_counts[answer.status] += 1
        headers = [*answer.headers, (b"content-length", b"%d" % len(answer.body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _handle(self, scope: Scope, receive: Receive) -> _Answer:
        state = self._state
        parts = scope["path"].split("/")
        if len(parts) != 4 or parts[0] or not parts[1] or not parts[2] or parts[3] != "message":
            return _answer(404, state.totals(), description="There is no such resource.")
        if scope["method"] != "POST":
            return _answer(
                405,
                state.totals(),
                description="Only POST is allowed here.",
                extra=[(b"allow", b"POST")],
            )
        body = await _read_body(receive, state.max_body_bytes)
        hook = state.authenticate(parts[1], parts[2])
        if hook is None:
            return _answer(401, state.totals(), description="The hook id or secret is wrong.")
        quota = state.quotas[hook.id]
        now = state.clock()
        fault = state.faults.next_for(hook.id)
        if fault is not None and is_front(fault):
            state.faults.take(fault)
            return _fault_answer(fault, quota.state(now))
        if not quota.admit(now):
            retry_after = quota.retry_after(now)
            return _answer(
                429,
                quota.state(now),
                description=f"The hook's quota is used up; try again in {retry_after} s.",
                extra=[(b"retry-after", b"%d" % retry_after)],
            )
        if fault is not None:
            state.faults.take(fault)
            if isinstance(fault.kind, int):
                return _fault_answer(fault, quota.state(now))
        text, problem = _validate(scope, body, state.max_body_bytes)
        if problem is None:
            state.post(hook, text)
            answer = _Answer(
                status=200,
                body=b"ok",
                headers=[(b"content-type", b"text/plain; charset=utf-8")],
            )
        else:
            answer = _answer(400, None, description=problem)
        answer.headers += quota.state(now).headers()
        if fault is not None:
            answer.delay = fault.delay
            answer.drop = fault.kind == "drop"
        return answer


def _fault_answer(fault: Fault, quota: QuotaState) -> _Answer:
    if not isinstance(fault.kind, int):  # only a drop: a delay is never taken here
        return _Answer(status=0, body=b"", headers=[], drop=True)
    extra: list[tuple[bytes, bytes]] = []
    if isinstance(fault.retry_after, str):
        extra.append((b"retry-after", fault.retry_after.encode("latin-1")))
    elif fault.retry_after is not None:
        extra.append((b"retry-after", b"%d" % math.ceil(fault.retry_after)))
    if not fault.headers:
        page = _proxy_page(fault.kind)
        page.headers += extra
        return page
    return _answer(fault.kind, quota, extra=extra)


async def _drop(scope: Scope, send: Send, answer: _Answer) -> None:
    """Make the server drop the connection: at once if it can, else in the middle of the answer.

    A server that does not know :data:`DROP_EXTENSION` would turn the exception into a 500, so
    the answer is started first; the server then has to abort the connection midway, which a
    client sees just as it sees a dropped connection.
    """
    extensions: Mapping[str, object] = scope.get("extensions") or {}
    if DROP_EXTENSION not in extensions:
        await send(
            {
                "type": "http.response.start",
                "status": 200 if answer.status == 0 else answer.status,
                "headers": [(b"content-length", b"%d" % max(len(answer.body), 2))],
            }
        )
    raise ConnectionDropped("The connection was dropped by a scripted fault.")
