"""Fixtures for the emulator's contract tests: fresh virtual clocks, a hand clock, helpers."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx
import pytest

from hookapi.emulator import IN_PROCESS_BASE_URL, Emulator, Hook

RATE_HEADERS = (
    "x-rate-limit-total-per-hour",
    "x-rate-limit-total-per-day",
    "x-rate-limit-used",
    "x-rate-limit-remaining",
)


class HandClock:
    """A clock that moves only when a test moves it, for exact window boundaries."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def emulator(clock: HandClock) -> Emulator:
    """A small-quota emulator on the hand clock."""
    return Emulator(per_hour=3, per_day=5, clock=clock)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    """A hook on this directory's ``emulator`` (overrides the plugin's ``hook``)."""
    return emulator.create_hook("Ops")


async def send(
    emulator: Emulator,
    method: str,
    path: str,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One request to the emulator in process."""
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url=IN_PROCESS_BASE_URL
    ) as http:
        return await http.request(method, path, content=content, headers=headers)


async def post(emulator: Emulator, hook: Hook, text: object = "hi") -> httpx.Response:
    """Post ``{"message": text}`` as the service's example does."""
    return await send(
        emulator,
        "POST",
        f"/{hook.id}/{hook.secret}/message",
        content=json.dumps({"message": text}).encode(),
        headers={"Content-Type": "application/json"},
    )


def rate(response: httpx.Response) -> tuple[int, int, int, int]:
    """The four rate-limit headers as ints: per hour, per day, used, remaining."""
    total_hour, total_day, used, remaining = (int(response.headers[h]) for h in RATE_HEADERS)
    return total_hour, total_day, used, remaining
