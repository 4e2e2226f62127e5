"""Test support for code that posts through hookapi: fixtures, assertions and scripted faults.

hookapi installs a pytest plugin (the ``pytest11`` entry point ``hookapi``) that gives every
test three fixtures, each one fresh per test:

- ``hook_emulator``: an :class:`~hookapi.emulator.Emulator` (set its options with
  ``@pytest.mark.hook_emulator(per_hour=10, window="sliding")``);
- ``hook``: a hook created on it;
- ``hook_client``: an :class:`~hookapi.AsyncHookClient` for that hook, talking to the emulator in
  process, with retry waits of hundredths of a second. It needs no closing.

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

import asyncio
import selectors
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from hookapi import AsyncHookClient, RetryPolicy
from hookapi.emulator import Emulator, Fault, FaultKind, Hook

if TYPE_CHECKING:
    import pytest
    from _typeshed import FileDescriptorLike

__all__ = ["VirtualTimeEventLoop", "assert_posted", "make_client", "scripted_faults"]

_FIXTURES: Final = "hookapi.testing.fixtures"
_SHOWN: Final = 20


def make_client(emulator: Emulator, hook: Hook | str, **options: Any) -> AsyncHookClient:
    """A client for ``hook`` that talks to ``emulator`` in process and retries without waiting.

    Retry waits are at most a tenth of a second; any :class:`~hookapi.AsyncHookClient` option
    (``retry``, ``timeout``, ...) in ``options`` replaces the default. The client needs no
    closing, as the in-process transport holds no connections.

    Example:
        >>> emulator = Emulator()
        >>> make_client(emulator, emulator.create_hook(), timeout=2.0)
        <AsyncHookClient base_url='http://emulator.localhost' hook_id='...'>
    """
    hook_id = hook if isinstance(hook, str) else hook.id
    found = next((h for h in emulator.hooks() if h.id == hook_id), None)
    if found is None:
        raise KeyError(f"The emulator has no hook with id {hook_id!r}.")
    options.setdefault("transport", emulator.transport())
    options.setdefault("retry", RetryPolicy(initial_delay=0.01, max_delay=0.1))
    return AsyncHookClient.from_url(found.url, **options)


def _shown(texts: Sequence[str]) -> str:
    more = f" ... and {len(texts) - _SHOWN} more" if len(texts) > _SHOWN else ""
    return f"{list(texts[:_SHOWN])!r}{more}"


def assert_posted(
    emulator: Emulator, hook: Hook | str, expected: Sequence[str], *, ordered: bool = True
) -> None:
    """Assert that exactly ``expected`` was posted through ``hook``, saying how it differs if not.

    Args:
        emulator: The emulator the hook lives on.
        hook: The hook, or its id.
        expected: The message texts, in the order they should have arrived.
        ordered: ``False`` compares them as a multiset, for messages posted by concurrent tasks.

    Raises:
        AssertionError: With both lists and the first difference (or what is missing and what
            is extra, when ``ordered`` is ``False``).

    Example:
        >>> emulator = Emulator()
        >>> assert_posted(emulator, emulator.create_hook(), ["hi"])
        Traceback (most recent call last):
        ...
        AssertionError: Hook ... on Desktop 'General' got 0 messages, expected 1.
          expected: ['hi']
          posted:   []
          first difference at #0: expected 'hi', posted nothing
    """
    messages = emulator.messages(hook)
    posted = [message.text for message in messages]
    wanted = list(expected)
    if ordered and posted == wanted:
        return
    if not ordered and Counter(posted) == Counter(wanted):
        return
    hook_id = hook if isinstance(hook, str) else hook.id
    desktop = next(h.desktop for h in emulator.hooks() if h.id == hook_id)
    lines = [
        f"Hook {hook_id} on Desktop {desktop!r} got {len(posted)} messages, "
        f"expected {len(wanted)}.",
        f"  expected: {_shown(wanted)}",
        f"  posted:   {_shown(posted)}",
    ]
    if ordered:
        index = next(
            (i for i, (want, got) in enumerate(zip(wanted, posted, strict=False)) if want != got),
            min(len(wanted), len(posted)),
        )
        want = repr(wanted[index]) if index < len(wanted) else "nothing"
        got = repr(posted[index]) if index < len(posted) else "nothing"
        lines.append(f"  first difference at #{index}: expected {want}, posted {got}")
    else:
        missing = list((Counter(wanted) - Counter(posted)).elements())
        extra = list((Counter(posted) - Counter(wanted)).elements())
        lines.append(f"  missing: {_shown(missing)}")
        lines.append(f"  extra:   {_shown(extra)}")
    raise AssertionError("\n".join(lines))


@contextmanager
def scripted_faults(emulator: Emulator, *kinds: FaultKind, **options: Any) -> Iterator[list[Fault]]:
    """Queue one fault per item of ``kinds``, and check on leaving that every one struck.

    Args:
        emulator: The emulator to script.
        *kinds: Statuses, ``"drop"`` or ``"delay"``, in the order they should strike.
        **options: :meth:`~hookapi.emulator.Emulator.fail_next` options for every fault
            (``retry_after``, ``headers``, ``delay``, ``hook``, ...).

    Raises:
        AssertionError: When the block ends normally with faults still unused: the code under
            test made fewer requests than the script expected.

    Example:
        >>> emulator = Emulator()
        >>> with scripted_faults(emulator, 500, "drop") as faults:
        ...     [fault.kind for fault in faults]
        Traceback (most recent call last):
        ...
        AssertionError: 2 of 2 scripted faults never struck: [500, 'drop'].
    """
    faults = [emulator.fail_next(kind, **options) for kind in kinds]
    yield faults
    pending = emulator.pending_faults()
    unused = [fault for fault in faults if any(fault is queued for queued in pending)]
    if unused:
        shown = [fault.kind for fault in unused]
        raise AssertionError(
            f"{len(unused)} of {len(faults)} scripted faults never struck: {shown}."
        )


class _VirtualTimeSelector(selectors.BaseSelector):
    """A selector that, instead of sleeping until the next timer, moves its loop's clock there."""

    def __init__(self, loop: VirtualTimeEventLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout is None or timeout <= 0:
            # Only I/O can wake a loop with no timer: wait for it for real.
            return ready or self._real.select(timeout)
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time: when every task waits, the clock jumps ahead.

    The asyncio counterpart of ``trio.testing.MockClock(autojump_threshold=0)``: a test that
    waits out an hour of quota finishes in milliseconds. The clock starts at 0. Use it for
    in-process tests only: a loop waiting on a real socket would jump past its timeouts.

    Example:
        In a ``conftest.py``, to run anyio tests on it::

            @pytest.fixture
            def anyio_backend():
                return ("asyncio", {"loop_factory": VirtualTimeEventLoop})

        >>> import anyio
        >>> async def an_hour() -> float:
        ...     await anyio.sleep(3600)
        ...     return anyio.current_time()
        >>> anyio.run(an_hour, backend_options={"loop_factory": VirtualTimeEventLoop})
        3600.0
    """

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_VirtualTimeSelector(self))

    def time(self) -> float:
        """The virtual time, in seconds since the loop was made."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead (the loop does this itself whenever it is idle)."""
        self._virtual_now += seconds


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``hook_emulator`` marker and the fixtures (a pytest hook)."""
    config.addinivalue_line(
        "markers",
        "hook_emulator(**options): keyword arguments for the hook_emulator fixture's Emulator.",
    )
    if not config.pluginmanager.has_plugin(_FIXTURES):
        from hookapi import _pytest_plugin  # noqa: PLC0415  (imports pytest: only when in use)

        config.pluginmanager.register(_pytest_plugin, _FIXTURES)
