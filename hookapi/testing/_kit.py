"""The testing kit's helpers: a client wired to an emulator, assertions, scripted faults."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Unpack

from .._client import AsyncHookClient, ClientOptions
from .._retry import RetryPolicy
from ..emulator import Emulator, Fault, FaultKind, Hook

__all__ = ["assert_posted", "make_client", "scripted_faults"]

_SHOWN: Final = 20


def make_client(
    emulator: Emulator, hook: Hook | str, **options: Unpack[ClientOptions]
) -> AsyncHookClient:
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
    if Counter(posted) == Counter(wanted):
        got = f"got the {len(wanted)} expected messages, in another order."
    elif len(posted) == len(wanted):
        got = f"got {len(posted)} messages, as many as expected, but not the expected ones."
    else:
        got = f"got {len(posted)} messages, expected {len(wanted)}."
    lines = [
        f"Hook {hook_id} on Desktop {desktop!r} {got}",
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
