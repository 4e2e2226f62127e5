"""The frozen dataclasses the hot path builds field by field are the ones their classes build."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from hookapi import PostResult, RateLimit
from hookapi._client import _post_result
from hookapi._frozen import slot_setters
from hookapi._quota import Reservation, rate_limit_of
from hookapi._quota._memory import HookState
from hookapi._quota._store import QuotaPolicy


@dataclass(frozen=True, slots=True)
class Pair:
    a: int
    b: int


def test_setters_must_name_every_field_once() -> None:
    assert len(slot_setters(Pair, "b", "a")) == 2
    for names in (("a",), ("a", "b", "c"), ("a", "a"), ("a", "a", "b")):
        with pytest.raises(TypeError, match="has the fields"):
            slot_setters(Pair, *names)


def check_same(built: object, expected: object) -> None:
    assert type(built) is type(expected)
    assert built == expected
    assert repr(built) == repr(expected)
    assert hash(built) == hash(expected)
    for field in dataclasses.fields(expected):  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(built, field.name, None)


def test_a_rate_limit_read_from_the_wire_is_the_class_own() -> None:
    found = {b"total-per-hour": b"60", b"used": b"7", b"remaining": b"x"}
    check_same(rate_limit_of(found), RateLimit(per_hour=60, per_day=None, used=7, remaining=None))


def test_a_post_result_is_the_class_own() -> None:
    limit = RateLimit(remaining=3)
    check_same(
        _post_result(200, 2, limit, 0.5),
        PostResult(status_code=200, attempts=2, rate_limit=limit, elapsed=0.5),
    )


def test_a_reservation_of_the_memory_quota_is_the_class_own() -> None:
    state = HookState(QuotaPolicy(), clock=lambda: 0.0)
    first = state.reserve_now()
    assert isinstance(first, Reservation)
    check_same(first, Reservation(probe=True, token=first.token))
