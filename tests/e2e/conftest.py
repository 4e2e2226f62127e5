"""Fixtures for the client-against-emulator tests: both backends on fresh virtual clocks."""

from __future__ import annotations

import logging
import traceback


def everything_said(records: list[logging.LogRecord], *objects: object) -> str:
    """All the text a secret could leak into: log records, tracebacks, reprs and strs."""
    texts = []
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts.extend(traceback.format_exception(record.exc_info[1]))
    for thing in objects:
        texts.extend([repr(thing), str(thing)])
        if isinstance(thing, BaseException):
            texts.extend(traceback.format_exception(thing))
            texts.extend(repr(value) for value in vars(thing).values())
    return "\n".join(texts)
