"""Frozen dataclasses built field by field, for the few built on every message.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, past the
``__setattr__`` that makes it frozen: about twice what setting the slots directly costs. The
hot path builds a :class:`~hookapi.RateLimit`, a quota ``Reservation`` and a
:class:`~hookapi.PostResult` per message, so it sets their slots itself; everything else uses
the classes' own constructors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["new", "slot_setters"]

#: An instance with no field set yet: every field must then be set by its slot's setter.
new = object.__new__


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of the slots of ``cls``, a frozen dataclass with slots, in ``names`` order.

    Raises:
        TypeError: ``names`` are not exactly the fields of ``cls`` (a field added to the
            class and not to its fast builder would be left unset).
    """
    fields = [field.name for field in dataclasses.fields(cls)]
    if sorted(fields) != sorted(names) or len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__} has the fields {fields}, not {list(names)}.")
    return tuple(cls.__dict__[name].__set__ for name in names)
