"""The pytest fixtures of :mod:`hookapi.testing`, registered when pytest loads that plugin.

They live apart so that importing :mod:`hookapi.testing` never imports pytest.
"""

from __future__ import annotations

import pytest

from .._client import AsyncHookClient
from ..emulator import Emulator, Hook
from ._kit import make_client

__all__ = ["hook", "hook_client", "hook_emulator"]


@pytest.fixture
def hook_emulator(request: pytest.FixtureRequest) -> Emulator:
    """A fresh emulator; ``@pytest.mark.hook_emulator(**options)`` passes options to it."""
    marker = request.node.get_closest_marker("hook_emulator")
    if marker is not None and marker.args:
        raise pytest.UsageError("@pytest.mark.hook_emulator takes keyword arguments only.")
    return Emulator(**(marker.kwargs if marker is not None else {}))


@pytest.fixture
def hook(hook_emulator: Emulator) -> Hook:
    """A hook on ``hook_emulator``, posting to the Desktop "General"."""
    return hook_emulator.create_hook()


@pytest.fixture
def hook_client(hook_emulator: Emulator, hook: Hook) -> AsyncHookClient:
    """A client for ``hook``, in process, with retry waits of at most a tenth of a second."""
    return make_client(hook_emulator, hook)
