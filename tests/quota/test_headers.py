"""Parsing the rate-limit and Retry-After headers never raises, whatever the answer holds."""

from __future__ import annotations

from email.utils import formatdate

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookapi import RateLimit
from hookapi._quota import parse_retry_after

NAMES = {
    "per_hour": "X-Rate-Limit-Total-Per-Hour",
    "per_day": "X-Rate-Limit-Total-Per-Day",
    "used": "X-Rate-Limit-Used",
    "remaining": "X-Rate-Limit-Remaining",
}

header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(values=st.dictionaries(st.sampled_from(sorted(NAMES)), header_text))
def test_any_header_text_parses_without_raising(values: dict[str, str]) -> None:
    headers = httpx.Headers({NAMES[k]: v for k, v in values.items()})
    parsed = RateLimit.from_headers(headers)
    if not values:
        assert parsed is None
        return
    assert parsed is not None
    for field in NAMES:
        value = getattr(parsed, field)
        assert value is None or (isinstance(value, int) and value >= 0)


@given(
    numbers=st.fixed_dictionaries({k: st.integers(min_value=0, max_value=10**11) for k in NAMES}),
    padding=st.sampled_from(["", " ", "\t"]),
)
def test_valid_counts_round_trip(numbers: dict[str, int], padding: str) -> None:
    headers = httpx.Headers({NAMES[k]: f"{padding}{v}{padding}" for k, v in numbers.items()})
    assert RateLimit.from_headers(headers) == RateLimit(**numbers)


@pytest.mark.parametrize("value", ["-1", "1.5", "1e3", "0x10", "١٢", "10000000000000", "", "+5"])
def test_malformed_counts_are_none(value: str) -> None:
    assert RateLimit.from_headers({"x-rate-limit-remaining": value}) == RateLimit()


def test_header_names_are_case_insensitive() -> None:
    headers = httpx.Headers({"x-RATE-limit-remaining": "4"})
    assert RateLimit.from_headers(headers) == RateLimit(remaining=4)


@given(seconds=st.integers(min_value=0, max_value=10**9))
def test_retry_after_delay_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)


@given(offset=st.integers(min_value=-(10**6), max_value=10**7))
def test_retry_after_http_date(offset: int) -> None:
    now = 1_800_000_000.0
    value = formatdate(now + offset, usegmt=True)
    assert parse_retry_after(value, now=now) == float(max(0, offset))


@given(value=st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=0.0)
    assert result is None or result >= 0


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "nan", "inf", "Wed, 21 Oct 2015 07:28:00", "99999999999 GMT"]
)
def test_retry_after_malformed(value: str | None) -> None:
    assert parse_retry_after(value, now=0.0) is None


def test_retry_after_uses_the_wall_clock_by_default() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
