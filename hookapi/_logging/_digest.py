"""The text of a log digest: the first records in full, then what the rest were, counted.

A flood of records is mostly the same few errors again; a digest shows the first ones whole
(half of its room) and sums the rest up by level and by the message they share ("... and 37
more ERROR records in the last 5 minutes, 12 of them like: ..."), so one message stands for
hundreds and every record is in it, in words or in a count.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..outbox import Receipt

__all__ = ["Entry", "build_digest", "entry_key", "truncate"]

#: Characters of a shared message shown after "like:".
_KEY_CHARS: Final = 120
#: Records shown whole at most in a digest; the rest are counted.
_SHOWN: Final = 10
#: Shapes listed at most in a summary.
_SHAPES: Final = 5
_SEPARATOR: Final = "\n\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One record, formatted in the caller's thread, with what a summary needs of it.

    Attributes:
        text: The formatted record.
        level: Its level name (``ERROR``).
        created: When it was made (``time.time()``).
        key: Its message before arguments were merged (the "like" of a summary).
    """

    text: str
    level: str
    created: float
    key: str


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying so."""
    if len(text) <= limit:
        return text
    note = " [... truncated]"
    return text[: max(0, limit - len(note))] + note


def _span(seconds: float) -> str:
    if seconds < 1:
        return "within a second"
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size or unit == "second":
            count = math.ceil(seconds / size)
            return f"in the last {count} {unit}{'s' if count != 1 else ''}"
    raise AssertionError  # pragma: no cover


def _summary(rest: Sequence[Entry]) -> list[str]:
    levels = Counter(entry.level for entry in rest)
    if len(levels) == 1:
        what = f"{len(rest)} more {next(iter(levels))} record{'s' if len(rest) != 1 else ''}"
    else:
        parts = ", ".join(f"{count} {level}" for level, count in levels.most_common())
        what = f"{len(rest)} more records ({parts})"
    span = _span(max(e.created for e in rest) - min(e.created for e in rest))
    shapes = Counter(entry.key for entry in rest).most_common()
    # Each shape is shown by its first record's first line: words, not a %s template.
    example: dict[str, str] = {}
    for entry in rest:
        example.setdefault(entry.key, entry_key(entry.text))
    first_key, first_count = shapes[0]
    lines = [f"... and {what} {span}, {first_count} of them like: {example[first_key]}"]
    for key, count in shapes[1:_SHAPES]:
        lines.append(f"    {count} like: {example[key]}")
    if len(shapes) > _SHAPES:
        others = sum(count for _, count in shapes[_SHAPES:])
        lines.append(f"    {others} others in {len(shapes) - _SHAPES} other shapes")
    return lines


def build_digest(
    messages: Sequence[Receipt],
    max_bytes: int,
    entry_of: Callable[[Receipt], Entry],
    size_of: Callable[[str], int],
) -> tuple[str, int]:
    """Join waiting records into one message of at most ``max_bytes`` of request body.

    The first records are shown whole (ten at most, in half the room); every later one is
    counted in a summary. Returns the text and how many records (all of them, here) it stands for.
    """
    entries = [entry_of(receipt) for receipt in messages]
    shown: list[str] = []
    for entry in entries:
        candidate = _SEPARATOR.join([*shown, entry.text])
        if shown and (len(shown) >= _SHOWN or size_of(candidate) > max_bytes // 2):
            break
        shown.append(entry.text)
    rest = entries[len(shown) :]
    if not rest:
        return _SEPARATOR.join(shown), len(entries)
    lines = _summary(rest)
    # The summary shrinks until it fits: fewer shapes, then shorter "like" texts.
    while True:
        text = _SEPARATOR.join([*shown, "\n".join(lines)])
        if size_of(text) <= max_bytes:
            return text, len(entries)
        if len(lines) > 1:
            lines.pop()
        elif len(shown) > 1:
            # The summary must come whole: one more record counted instead of shown.
            shown.pop()
            lines = _summary(entries[len(shown) :])
        else:
            lines = [truncate(lines[0], max(40, len(lines[0]) // 2))]
            if len(lines[0]) <= 40:
                return _SEPARATOR.join([*shown, lines[0]]), len(entries)


def entry_key(message: object) -> str:
    """The first line of a record's unformatted message, as a summary names it."""
    first = str(message).strip().splitlines()
    return truncate(first[0] if first else "", _KEY_CHARS)
