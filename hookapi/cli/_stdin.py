"""Standard input for ``hookapi send``, read in chunks so that memory stays bounded.

A line (or, for ``send -``, the whole input) longer than ``--max-bytes`` is refused as soon
as the reading passes the limit, with its line number: it is never held whole, nor uploaded
for the service to refuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Final, TextIO

from ._common import CommandError, ExitCode

__all__ = ["CHUNK_BYTES", "DEFAULT_MAX_BYTES", "read_lines", "read_message"]

#: The longest line (or ``-`` message) ``send`` takes by default: 1 MiB.
DEFAULT_MAX_BYTES: Final = 1024 * 1024
#: How much is read at a time.
CHUNK_BYTES: Final = 64 * 1024


def _chunks(stream: TextIO | BinaryIO) -> Iterator[bytes]:
    """The bytes of ``stream`` (its binary buffer when it has one), a chunk at a time."""
    buffer = getattr(stream, "buffer", stream)
    while True:
        chunk = buffer.read(CHUNK_BYTES)
        if not chunk:
            return
        # A text stream without a buffer (a StringIO, say) gives str.
        yield chunk.encode("utf-8", "surrogateescape") if isinstance(chunk, str) else chunk


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{what} is not UTF-8 text.", ExitCode.INVALID_INPUT) from None


def _too_long(number: int, max_bytes: int) -> CommandError:
    return CommandError(
        f"line {number} of standard input is longer than --max-bytes ({max_bytes} bytes); "
        "nothing was sent.",
        ExitCode.INVALID_INPUT,
    )


def read_lines(stream: TextIO | BinaryIO, *, max_bytes: int) -> tuple[list[tuple[int, str]], int]:
    """Numbered non-blank lines of ``stream``, and how many blank lines were skipped.

    Every line is read before any is sent, so a refusal leaves nothing half posted. A line
    is held only up to ``max_bytes`` (and one chunk): past that the reading stops.

    Raises:
        CommandError: A line is longer than ``max_bytes`` (its line feed, and a carriage
            return before it, not counted), or is not UTF-8.
    """
    kept: list[tuple[int, str]] = []
    blank = 0
    pending = bytearray()
    number = 1

    def finish() -> None:
        nonlocal blank
        line = bytes(pending.removesuffix(b"\r"))
        if len(line) > max_bytes:
            raise _too_long(number, max_bytes)
        text = _decode(line, f"line {number} of standard input")
        if text.strip():
            kept.append((number, text))
        else:
            blank += 1

    for chunk in _chunks(stream):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            pending += chunk[start:end]
            finish()
            pending.clear()
            number += 1
            start = end + 1
        pending += chunk[start:]
        # One byte more than the limit may be the "\r" of a "\r\n" still to come.
        if len(pending) > max_bytes + 1:
            raise _too_long(number, max_bytes)
    if pending:
        finish()
    return kept, blank


def read_message(stream: TextIO | BinaryIO, *, max_bytes: int) -> str:
    """All of ``stream`` as one message (for ``send -``), without its final newline.

    Raises:
        CommandError: The input is longer than ``max_bytes`` (its final newline not
            counted), or is not UTF-8.
    """
    data = bytearray()
    for chunk in _chunks(stream):
        data += chunk
        if len(data) > max_bytes + 2:  # room for a final "\r\n"
            break
    message = bytes(data).removesuffix(b"\n").removesuffix(b"\r")
    if len(message) > max_bytes:
        raise CommandError(
            f"standard input is longer than --max-bytes ({max_bytes} bytes); nothing was sent.",
            ExitCode.INVALID_INPUT,
        )
    return _decode(message, "standard input")
