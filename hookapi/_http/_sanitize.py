"""Copies of a failed request's exception chain that keep its story and drop its frames.

A transport error's traceback reaches the frames that sent the request, and their locals hold
the real URL and a proxy's credentials (httpx's and httpcore's frames as well as ours). Error
trackers, ``pytest -l`` and rich render every frame's locals of every chained exception, so the
error a caller gets is chained to copies: same types and redacted texts, no tracebacks.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["RedactedError", "sanitized_chain"]

#: How deep a chain is copied; deeper links are dropped (a chain may even loop).
MAX_DEPTH = 16

Redact = Callable[[str], str]


class RedactedError(Exception):
    """Stands in, in a copied chain, for an exception that cannot be rebuilt from its text.

    Its message names the original type, then the original's redacted text.
    """


def sanitized_chain(exc: BaseException, redact: Redact) -> BaseException:
    """A copy of ``exc`` and what it chains, with texts passed through ``redact``.

    Each exception is rebuilt as its own type from its redacted arguments (an ``OSError``
    keeps its errno, a group its members); one that cannot be rebuilt that way becomes a
    :class:`RedactedError`. The copies have no ``__traceback__``, and their ``__cause__``
    and ``__context__`` are copies too, so nothing in the new chain reaches a frame.

    Args:
        exc: The exception as raised, with its traceback and chain.
        redact: Returns a text with every credential replaced by a placeholder.
    """
    return _copy(exc, redact, 0)


def _copy(exc: BaseException, redact: Redact, depth: int) -> BaseException:
    copy = _rebuilt(exc, redact, depth)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        for note in notes:
            copy.add_note(redact(str(note)))
    if depth < MAX_DEPTH:
        if exc.__cause__ is not None:
            copy.__cause__ = _copy(exc.__cause__, redact, depth + 1)
        elif exc.__context__ is not None and not exc.__suppress_context__:
            copy.__context__ = _copy(exc.__context__, redact, depth + 1)
    return copy


def _rebuilt(exc: BaseException, redact: Redact, depth: int) -> BaseException:
    cls = type(exc)
    args: tuple[object, ...]
    if isinstance(exc, BaseExceptionGroup):
        members = [_copy(member, redact, depth + 1) for member in exc.exceptions]
        args = (redact(exc.message), members)
    else:
        args = tuple(_redacted(arg, redact) for arg in exc.args)
    try:
        copy = cls(*args)
        text = str(copy)
    except Exception:  # any constructor may refuse its own arguments back
        copy, text = None, ""
    if copy is None or type(copy) is not cls or redact(text) != text:
        if isinstance(exc, BaseExceptionGroup):
            name = f"{cls.__module__}.{cls.__qualname__}: {redact(exc.message)}"
            return BaseExceptionGroup(name, args[1])  # type: ignore[arg-type]
        return RedactedError(f"{cls.__module__}.{cls.__qualname__}: {_text(exc, redact)}")
    return copy


def _redacted(arg: object, redact: Redact) -> object:
    if arg is None or isinstance(arg, bool | int | float):
        return arg
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, bytes):
        return redact(arg.decode("latin-1")).encode("latin-1")
    return redact(str(arg))  # an exception carried as an argument reads as its text


def _text(exc: BaseException, redact: Redact) -> str:
    try:
        return redact(str(exc))
    except Exception:  # a broken __str__: the type alone
        return "(no text)"
