"""The pytest fixtures of :mod:`hookapi.testing`, registered when pytest loads that plugin.

They live apart so that importing :mod:`hookapi.testing` never imports pytest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._client import AsyncHookClient
from ..emulator import Emulator, Hook
from ._kit import make_client
from ._served import serve_in_thread

__all__ = ["hook", "hook_client", "hook_emulator", "served_hook_url"]


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


@pytest.fixture
def served_hook_url(hook_emulator: Emulator, hook: Hook) -> Iterator[str]:
    """``hook``'s URL on ``hook_emulator`` served over a loopback socket for the test's duration.

    For code that builds its own client (``monkeypatch.setenv("HOOKAPI_URL", served_hook_url)``):
    an app under ``TestClient`` or ``httpx.ASGITransport``, a subprocess, the sync client.
    """
    with serve_in_thread(hook_emulator) as server:
        yield hook.url_for(server.url)
