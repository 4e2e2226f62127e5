"""The handler's two halves: the :class:`Feed` callers put records in, and the :class:`Pump`.

The feed is the only thing a logging call touches: a bounded deque and a count of what it
turned away, safe from any thread and never waiting. The pump runs on the handler's event
loop: it moves records from the feed into an :class:`~hookapi.Outbox` with digests on, which
posts them under the hook's quota, and it sleeps until a record wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from .._validate import encode_message
from ..outbox import Coalesce, Outbox, OutboxFullError
from ._digest import Entry, build_digest, entry_key, truncate

if TYPE_CHECKING:
    from .._client import AsyncHookClient
    from ..outbox import Receipt

__all__ = ["Feed", "Pump"]

logger = logging.getLogger("hookapi")

#: Seconds the pump waits before it tries again to hand records to a full outbox.
_FULL_RETRY = 1.0


class Feed:
    """The bounded queue between logging calls (any thread) and the pump (the loop thread)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: deque[Entry] = deque()
        #: Records turned away because the queue was full, not yet said in a message.
        self.full = 0
        #: Records whose formatting raised, not yet said; and the errors' type names.
        self.broken = 0
        self.broken_kinds: dict[str, None] = {}
        self.closing = False
        #: True while the pump sleeps: the next record must wake it.
        self.asleep = False
        #: Wakes the pump from any thread; set once its loop runs.
        self.wake: Callable[[], None] | None = None
        #: The pump's thread: records logged there are never sent (no feedback loop).
        self.thread: int | None = None
        self._lock = threading.Lock()
        self._taken: tuple[int, int, dict[str, None]] = (0, 0, {})

    @property
    def dropped(self) -> int:
        """Records dropped (queue full, or formatting raised) and not yet said in a message."""
        return self.full + self.broken

    def offer(self, entry: Entry) -> None:
        """Queue a record, or count it dropped when full; never waits for the pump."""
        if len(self.entries) >= self.capacity:
            with self._lock:
                self.full += 1
            return
        self.entries.append(entry)
        if self.asleep:
            self._wake()

    def unformatted(self, kind: str) -> None:
        """Count a record dropped because formatting it raised ``kind`` (an exception's name)."""
        with self._lock:
            self.broken += 1
            self.broken_kinds[kind] = None
        if self.asleep:
            self._wake()

    def take_dropped(self) -> str:
        """What was dropped since the last call, as the next message says it (``""``: nothing)."""
        with self._lock:
            full, broken, kinds = self.full, self.broken, self.broken_kinds
            self.full = self.broken = 0
            self.broken_kinds = {}
        self._taken = (full, broken, kinds)
        return _dropped_note(full, broken, kinds, self.capacity)

    def give_back_dropped(self) -> None:
        """Count again what the last :meth:`take_dropped` took but no message said."""
        full, broken, kinds = self._taken
        with self._lock:
            self.full += full
            self.broken += broken
            self.broken_kinds.update(kinds)

    def rearm(self) -> None:
        """Make a stopped feed ready for the next pump (records keep waiting meanwhile)."""
        self.closing = False
        self.asleep = False

    def stop(self) -> None:
        """Ask the pump to hand over what is queued, drain, and end."""
        self.closing = True
        self._wake()

    def _wake(self) -> None:
        self.asleep = False
        wake = self.wake
        if wake is not None:
            # RuntimeError: the loop has ended, and nothing is listening any more.
            with contextlib.suppress(RuntimeError):
                wake()


class Pump:
    """Moves records from a :class:`Feed` into an outbox with digests on, until stopped."""

    def __init__(
        self,
        feed: Feed,
        client: AsyncHookClient,
        *,
        owns_client: bool,
        coalesce: Coalesce,
        drain_timeout: float,
        own_thread: bool,
    ) -> None:
        self._own_thread = own_thread
        self._feed = feed
        self._client = client
        self._owns_client = owns_client
        self._coalesce = replace(coalesce, join=self._join)
        self._drain_timeout = drain_timeout
        self._meta: dict[int, Entry] = {}
        self._pending: deque[Receipt] = deque()
        self._changed: anyio.Event | None = None
        #: The outbox while the pump runs (its ``pending`` is what waits for the hook).
        self.outbox: Outbox | None = None
        # A record stays readable in a digest: at most a quarter of its room.
        self._text_limit = max(80, coalesce.max_bytes // 4)

    @property
    def held(self) -> int:
        """Records handed to the outbox and not yet delivered or given up (their metadata)."""
        return len(self._meta)

    async def run(self) -> None:
        """Deliver until the feed is stopped, then drain for up to ``drain_timeout``."""
        if self._own_thread:
            self._feed.thread = threading.get_ident()
        self._changed = anyio.Event()
        self._feed.wake = self._waker()
        try:
            outbox = Outbox(
                self._client,
                coalesce=self._coalesce,
                max_size=self._feed.capacity,
                on_full="raise",
                drain_timeout=self._drain_timeout,
            )
            self.outbox = outbox
            async with outbox:
                await self._serve(outbox)
        finally:
            self._feed.wake = None
            if self._owns_client:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()

    def _waker(self) -> Callable[[], None]:
        """A callable that sets the pump's event from any thread, on this loop's backend."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio  # noqa: PLC0415  (only under trio, which is then imported already)

            token = trio.lowlevel.current_trio_token()
            return lambda: token.run_sync_soon(self._set)

        def wake() -> None:
            loop.call_soon_threadsafe(self._set)

        return wake

    def _set(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _serve(self, outbox: Outbox) -> None:
        feed = self._feed
        while True:
            self._changed = anyio.Event()
            full = await self._move(outbox)
            await self._forget_done(outbox)
            if feed.closing and (full or not feed.entries):
                return
            if full:
                with anyio.move_on_after(_FULL_RETRY):
                    await self._changed.wait()
                continue
            feed.asleep = True
            if feed.entries or feed.closing or feed.dropped:
                feed.asleep = False
                continue
            await self._changed.wait()

    async def _move(self, outbox: Outbox) -> bool:
        """Hand what the feed holds to the outbox; return True when the outbox is full."""
        feed = self._feed
        note = feed.take_dropped()
        while feed.entries or note:
            if feed.entries:
                entry = feed.entries[0]
                text = truncate(entry.text, self._text_limit)
                if note:
                    text = f"{note}\n{text}"
                entry = replace(entry, text=text)
            else:
                entry = Entry(text=note, level="WARNING", created=time.time(), key=note)
            try:
                receipt = await outbox.put(entry.text)
            except OutboxFullError:
                if note:
                    feed.give_back_dropped()  # said in a later message instead
                return True
            if feed.entries:
                feed.entries.popleft()
            note = ""
            self._meta[receipt.id] = entry
            self._pending.append(receipt)
        return False

    async def _forget_done(self, outbox: Outbox) -> None:
        while self._pending and self._pending[0].done:
            self._meta.pop(self._pending.popleft().id, None)
        for letter in outbox.failed():
            # Already logged (to the hookapi logger, never sent); kept, they would pile up.
            self._meta.pop(letter.id, None)
            await outbox.discard(letter)

    def _entry(self, receipt: Receipt) -> Entry:
        found = self._meta.get(receipt.id)
        if found is not None:
            return found
        return Entry(text=receipt.text, level="?", created=time.time(), key=entry_key(receipt.text))

    def _join(self, messages: Sequence[Receipt], max_bytes: int) -> tuple[str, int]:
        return build_digest(messages, max_bytes, self._entry, _body_size)


def _records(count: int) -> str:
    return f"{count} record{'s were' if count != 1 else ' was'} dropped"


def _dropped_note(full: int, broken: int, kinds: dict[str, None], capacity: int) -> str:
    """The line a message starts with when records were dropped before it (``""``: none)."""
    notes = []
    if full:
        notes.append(f"({_records(full)}: the log handler's queue of {capacity} was full)")
    if broken:
        notes.append(f"({_records(broken)}: formatting raised {', '.join(kinds)})")
    return "\n".join(notes)


def _body_size(text: str) -> int:
    return len(encode_message(text))
