"""Shared fixtures: both async backends on virtual time, and a mock Hook API."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from trio.testing import MockClock

from hookapi import AsyncHookClient, RetryPolicy
from hookapi.testing import VirtualTimeEventLoop

BASE = "https://hooks.example.test/v1"
HOOK_ID = "35d7bef2-3d7e-11ec-bfa2-42010a200115"


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    """Backend options for ``name`` on a fresh virtual clock that jumps whenever all wait."""
    if name == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualTimeEventLoop})


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Every async test runs on asyncio and on trio, each on a fresh virtual clock at 0.

    Hours of backoff and throttling take milliseconds; tests with real sockets override this.
    """
    return virtual_backend(request.param)


@pytest.fixture
def secret() -> str:
    """A fresh random secret, so a leak of it can be searched for anywhere."""
    return secrets.token_hex(32)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """A respx router standing in for the Hook API; every route must be matched."""
    with respx.mock(base_url=BASE, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def message_url(secret: str) -> str:
    return f"{BASE}/{HOOK_ID}/{secret}/message"


ClientFactory = Callable[..., AsyncHookClient]


@pytest.fixture
def make_client(secret: str, router: respx.MockRouter) -> ClientFactory:
    """Build a client whose inner transport is the respx router (fast, jitter-free retries)."""

    def make(**options: Any) -> AsyncHookClient:
        options.setdefault("retry", RetryPolicy(initial_delay=1.0, max_delay=8.0, jitter=False))
        options.setdefault("transport", httpx.MockTransport(router.async_handler))
        return AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=BASE, **options)

    return make


def rate_headers(
    remaining: int | None, *, per_hour: int = 100, per_day: int = 1000, used: int | None = None
) -> dict[str, str]:
    """The four rate-limit headers as the service sends them."""
    headers = {
        "X-Rate-Limit-Total-Per-Hour": str(per_hour),
        "X-Rate-Limit-Total-Per-Day": str(per_day),
    }
    if remaining is not None:
        headers["X-Rate-Limit-Remaining"] = str(remaining)
        headers["X-Rate-Limit-Used"] = str(per_hour - remaining if used is None else used)
    return headers
