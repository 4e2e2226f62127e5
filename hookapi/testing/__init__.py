"""Test support for code that posts through hookapi: fixtures, assertions and scripted faults.

hookapi installs a pytest plugin (the ``pytest11`` entry point ``hookapi``) that gives every
test four fixtures, each one fresh per test:

- ``hook_emulator``: an :class:`~hookapi.emulator.Emulator` (set its options with
  ``@pytest.mark.hook_emulator(per_hour=10, window="sliding")``);
- ``hook``: a hook created on it;
- ``hook_client``: an :class:`~hookapi.AsyncHookClient` for that hook, talking to the emulator in
  process, with retry waits of hundredths of a second. It needs no closing;
- ``served_hook_url``: the hook's URL on ``hook_emulator`` served over a loopback socket (from a
  thread, for the test's duration), for code that builds its own client from ``HOOKAPI_URL``.

The fixtures are plain (not async), so they work under anyio's pytest plugin, pytest-asyncio
and trio alike. Importing this module does not import pytest; pytest itself loads the
fixtures when it loads the plugin.

Example:
    A complete test module::

        import pytest
        from hookapi.testing import assert_posted, scripted_faults

        @pytest.mark.anyio
        async def test_the_bot_says_hello(hook_client, hook_emulator, hook):
            await hook_client.post_message("Hello")
            assert_posted(hook_emulator, hook, ["Hello"])

        @pytest.mark.anyio
        async def test_the_bot_rides_out_maintenance(hook_client, hook_emulator, hook):
            with scripted_faults(hook_emulator, 503, 503):
                result = await hook_client.post_message("Deployed")
            assert result.attempts == 3
            assert_posted(hook_emulator, hook, ["Deployed"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._kit import assert_posted, make_client, scripted_faults
from ._loop import VirtualTimeEventLoop
from ._served import serve_in_thread

if TYPE_CHECKING:
    import pytest

__all__ = [
    "VirtualTimeEventLoop",
    "assert_posted",
    "make_client",
    "scripted_faults",
    "serve_in_thread",
]

_FIXTURES: Final = "hookapi.testing.fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``hook_emulator`` marker and the fixtures (a pytest hook)."""
    config.addinivalue_line(
        "markers",
        "hook_emulator(**options): keyword arguments for the hook_emulator fixture's Emulator.",
    )
    if not config.pluginmanager.has_plugin(_FIXTURES):
        from . import _plugin  # noqa: PLC0415  (imports pytest: only when in use)

        config.pluginmanager.register(_plugin, _FIXTURES)
