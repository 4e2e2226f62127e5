"""Shared fixtures: both async backends on virtual time, and a mock Hook API."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import anyio._backends._asyncio
import anyio._backends._trio
import httpx
import pytest
import respx
import trio
from trio.testing import MockClock

from hookapi import AsyncHookClient, RetryPolicy
from hookapi.testing import VirtualTimeEventLoop

BASE = "https://hooks.example.test/v1"
HOOK_ID = "35d7bef2-3d7e-11ec-bfa2-42010a200115"


#: How many worker threads the running trio loop waits for.
_IN_THREADS: trio.lowlevel.RunVar[int] = trio.lowlevel.RunVar("hookapi_tests_in_threads", default=0)
_trio_run_in_thread = anyio._backends._trio.TrioBackend.run_sync_in_worker_thread.__func__  # type: ignore[attr-defined]
_asyncio_run_in_thread = anyio._backends._asyncio.AsyncIOBackend.run_sync_in_worker_thread.__func__  # type: ignore[attr-defined]


async def _trio_thread_on_still_time(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """anyio's ``to_thread`` on trio, with a jumping ``MockClock`` standing still meanwhile.

    ``MockClock(autojump_threshold=0)`` jumps whenever every task waits, and a task waiting
    for a thread (a SQLite commit) waits: the clock would jump to the next timer, so that a
    retry loop went through hours of backoff, or a drain through its timeout, while one commit
    took real milliseconds (more of them on a busy machine).
    """
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, MockClock) or (clock.autojump_threshold and not _IN_THREADS.get()):
        return await _trio_run_in_thread(cls, *args, **kwargs)
    if not _IN_THREADS.get():
        clock.autojump_threshold = math.inf  # the thread's end wakes the loop, for real
    _IN_THREADS.set(_IN_THREADS.get() + 1)
    try:
        return await _trio_run_in_thread(cls, *args, **kwargs)
    finally:
        _IN_THREADS.set(_IN_THREADS.get() - 1)
        if not _IN_THREADS.get():
            clock.autojump_threshold = 0


async def _asyncio_thread_on_still_time(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """anyio's ``to_thread`` on asyncio, counted as a thread the virtual loop waits for.

    anyio runs its own worker threads rather than the loop's executor, so that
    ``VirtualTimeEventLoop`` would not know of them and jump past their work as trio's clock
    does.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualTimeEventLoop):
        return await _asyncio_run_in_thread(cls, *args, **kwargs)
    loop._in_threads += 1
    try:
        return await _asyncio_run_in_thread(cls, *args, **kwargs)
    finally:
        loop._in_threads -= 1


# anyio runs every worker thread through these: both virtual clocks stand still meanwhile, so
# that both backends see the same virtual time whatever the machine's speed.
anyio._backends._trio.TrioBackend.run_sync_in_worker_thread = classmethod(  # type: ignore[method-assign,assignment]
    _trio_thread_on_still_time
)
anyio._backends._asyncio.AsyncIOBackend.run_sync_in_worker_thread = classmethod(  # type: ignore[method-assign,assignment]
    _asyncio_thread_on_still_time
)


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    """Backend options for ``name`` on a fresh virtual clock that jumps whenever all wait.

    Both clocks stand still while a worker thread runs (its work takes real time).
    """
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
