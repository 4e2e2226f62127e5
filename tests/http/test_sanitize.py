"""Sanitized chains: the copies keep each exception's type and text, and drop every frame."""

from __future__ import annotations

import errno

import httpcore
import httpx
import pytest

from hookapi._http import RedactedError, sanitized_chain
from hookapi._http._sanitize import MAX_DEPTH

SECRET = "s3cr3t-value"


def hide(text: str) -> str:
    return text.replace(SECRET, "***")


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # any kind is copied
        return caught


def links(exc: BaseException | None) -> list[BaseException]:
    found = []
    while exc is not None:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def test_types_texts_and_errnos_are_kept_and_frames_dropped() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, f"refused for /{SECRET}/message")
    try:
        try:
            try:
                raise refused
            except OSError as exc:
                raise httpcore.ConnectError(str(exc)) from exc
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc)) from exc
    except httpx.ConnectError as exc:
        original = exc
    copy = sanitized_chain(original, hide)
    chain = links(copy)
    assert [type(link) for link in chain] == [
        httpx.ConnectError,
        httpcore.ConnectError,
        ConnectionRefusedError,
    ]
    assert all(link.__traceback__ is None for link in chain)
    assert all(SECRET not in str(link) + repr(link.args) for link in chain)
    assert str(chain[0]) == str(original).replace(SECRET, "***")
    assert isinstance(chain[2], OSError)
    assert chain[2].errno == errno.ECONNREFUSED
    assert all(link is not orig for link, orig in zip(chain, links(original), strict=True))


def test_bytes_and_object_arguments_and_notes_are_redacted() -> None:
    exc = ValueError(f"GET /{SECRET}".encode(), {"path": SECRET}, 3)
    exc.add_note(f"while sending /{SECRET}/")
    copy = sanitized_chain(raised(exc), hide)
    assert type(copy) is ValueError
    assert copy.args == (b"GET /***", "{'path': '***'}", 3)
    assert copy.__notes__ == ["while sending /***/"]


def test_an_exception_that_cannot_be_rebuilt_becomes_a_redacted_error() -> None:
    class Picky(Exception):
        def __init__(self, text: str, *, code: int) -> None:
            super().__init__(text)
            self.code = code

    copy = sanitized_chain(raised(Picky(f"no /{SECRET}", code=1)), hide)
    assert type(copy) is RedactedError
    assert str(copy) == f"{Picky.__module__}.{Picky.__qualname__}: no /***"


def test_a_copy_whose_text_would_still_show_the_secret_is_replaced() -> None:
    class Echo(Exception):
        def __str__(self) -> str:
            return f"always /{SECRET}"

    copy = sanitized_chain(raised(Echo("x")), hide)
    assert type(copy) is RedactedError
    assert SECRET not in str(copy)


def test_a_broken_str_leaves_the_type_alone() -> None:
    class Broken(Exception):
        def __init__(self) -> None:
            super().__init__()

        def __str__(self) -> str:
            raise RuntimeError("no")

    copy = sanitized_chain(raised(Broken()), hide)
    assert str(copy).endswith("Broken: (no text)")


def test_a_context_stays_a_context_and_a_suppressed_one_is_dropped() -> None:
    try:
        try:
            raise KeyError(SECRET)
        except KeyError:
            raise OSError("while handling") from None
    except OSError as exc:
        suppressed = exc
    assert sanitized_chain(suppressed, hide).__context__ is None
    try:
        try:
            raise KeyError(SECRET)
        except KeyError:
            raise OSError("while handling")  # noqa: B904  (the implicit context is the point)
    except OSError as exc:
        implicit = exc
    copy = sanitized_chain(implicit, hide)
    assert copy.__cause__ is None
    assert not copy.__suppress_context__
    assert isinstance(copy.__context__, KeyError)
    assert copy.__context__.args == ("***",)
    assert copy.__context__.__traceback__ is None


@pytest.mark.parametrize("group", [ExceptionGroup, BaseExceptionGroup])
def test_groups_keep_their_members_copied(group: type[BaseExceptionGroup[BaseException]]) -> None:
    members: list[BaseException] = [raised(OSError(f"a /{SECRET}")), raised(KeyError("b"))]
    if group is BaseExceptionGroup:
        members.append(raised(KeyboardInterrupt()))
    copy = sanitized_chain(raised(group(f"all failed /{SECRET}", members)), hide)
    assert isinstance(copy, BaseExceptionGroup)
    assert copy.message == "all failed /***"
    assert [type(member) for member in copy.exceptions] == [type(m) for m in members]
    assert str(copy.exceptions[0]) == "a /***"
    assert all(member.__traceback__ is None for member in copy.exceptions)


def test_a_looping_chain_ends_at_the_depth_limit() -> None:
    first, second = OSError("one"), OSError("two")
    first.__cause__, second.__cause__ = second, first
    assert len(links(sanitized_chain(first, hide))) == MAX_DEPTH + 1
