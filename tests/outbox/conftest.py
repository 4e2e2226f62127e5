"""Fixtures for the outbox: an emulator in process on the virtual clock, and a client for it."""

from __future__ import annotations

import pytest

from hookapi import AsyncHookClient
from hookapi.emulator import Emulator, Hook
from hookapi.testing import make_client


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Emulator:
    """A fresh emulator; parametrize it indirectly with a dict of options to change them."""
    options = {"per_hour": 1000, "per_day": 100_000, **getattr(request, "param", {})}
    return Emulator(**options)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Bots")


@pytest.fixture
def client(emulator: Emulator, hook: Hook) -> AsyncHookClient:
    """In process, retry waits of at most a tenth of a second; needs no closing."""
    return make_client(emulator, hook)


def texts(emulator: Emulator) -> list[str]:
    return [message.text for message in emulator.messages()]
