"""The :class:`Outbox`: an ordered queue in front of one client, as fast as the quota allows.

Producers ``put`` and move on; a fixed set of sender tasks (``concurrency`` of them, in one
anyio task group the outbox owns) takes messages from the head of the queue and posts each
with no deadline, so a burst larger than the quota waits for it instead of failing. What the
service refuses for good becomes a dead letter; what means the hook itself is gone pauses
the outbox; everything else is tried again until it goes through.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Literal, Self

import anyio
import anyio.abc
import anyio.lowlevel

from .._client import AsyncHookClient, PostResult
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    ClientClosedError,
    Delivery,
    HookAPIError,
    InvalidInputError,
    RateLimitError,
)
from .._quota import HookKey
from .._validate import check_timeout, encode_message
from ._coalesce import Coalesce, TokenBucket, checked_join
from ._receipt import (
    DeadLetter,
    OutboxClosedError,
    OutboxFullError,
    Receipt,
    ReceiptState,
    dropped_error,
)
from ._sqlite import SQLiteStore
from ._stores import (
    LeaseLostError,
    MemoryStore,
    OutboxStore,
    SharedStore,
    StoredMessage,
    StoredState,
    StoreError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from opentelemetry.trace import Link

    from .._otel import Instrumentation

__all__ = ["Outbox"]

logger = logging.getLogger("hookapi")

#: Statuses that mean the hook itself is gone, denied or moved: every queued message would
#: fail too. A redirect is not followed (the hook's URL holds a secret, and a POST is not
#: safe to repeat elsewhere): the hook's URL needs changing, which pausing leaves to a person.
PAUSE_STATUSES = frozenset({301, 302, 303, 307, 308, 401, 403, 404})


class Outbox:
    """A queue of messages for one hook, delivered in order and as fast as its quota allows.

    Use it as ``async with Outbox(client) as outbox:``; ``put`` returns at once with a
    :class:`Receipt` (after the commit, with a durable store), and the outbox's sender tasks
    post each message through ``client`` without a deadline: a burst larger than the quota
    waits for it rather than failing. Leaving the block drains it for up to ``drain_timeout``.

    Args:
        client: The client to post through (it stays the caller's: the outbox never closes it).
        store: Where messages are kept: a :class:`MemoryStore` (the default), a
            :class:`SQLiteStore`, or a path, short for ``SQLiteStore(path)``; or a
            :class:`RedisStore`, one queue a fleet of processes shares: every process puts,
            and one at a time (see :attr:`delivering`) delivers.
        max_size: Messages the outbox holds at most, queued or being sent.
        on_full: What ``put`` does when ``max_size`` are held: ``"wait"`` for room,
            ``"raise"`` :class:`OutboxFullError`, or ``"drop_oldest"`` queued message (not
            with a :class:`RedisStore`, where ``max_size`` counts this process's messages
            not yet ended).
        concurrency: Messages posted at once. 1 (the default) posts one at a time, so they
            arrive in ``put`` order; with more they start in that order.
        drain_timeout: Seconds leaving ``async with`` spends delivering what is queued
            (``math.inf``: until all is delivered).
        delivery: ``"at_least_once"`` resends a message whose fate is unknown (an answer
            lost, or a crash mid-send), which may post it twice; ``"at_most_once"`` never
            resends it and reports it ``UNKNOWN`` instead, which may lose it.
        on_pause: Called with the error when the service answers 401, 403, 404 or a redirect
            (3xx), or when the store cannot record that a message is about to be sent
            (``at_most_once``): that pauses the outbox until :meth:`resume` (see
            :attr:`paused`).
        on_dead_letter: Called with each new :class:`DeadLetter`, before the next message
            starts (so calling :meth:`pause` from it stops the queue right there).
        coalesce: Fold a backlog into digests (:class:`Coalesce`): while more messages wait
            than its share of the quota can post now, consecutive ones go as one message, and
            every receipt it carries settles with its answer. ``None`` (the default): never.

    Example:
        >>> import hookapi
        >>> async def main(client: hookapi.AsyncHookClient) -> None:
        ...     async with hookapi.Outbox(client, store="outbox.sqlite") as outbox:
        ...         receipt = await outbox.put("Deploy finished")
        ...     print(receipt.state)
    """

    def __init__(  # noqa: PLR0915  (one check per option)
        self,
        client: AsyncHookClient,
        *,
        store: OutboxStore | str | os.PathLike[str] | None = None,
        max_size: int = 10_000,
        on_full: Literal["wait", "raise", "drop_oldest"] = "wait",
        concurrency: int = 1,
        drain_timeout: float = 30.0,
        delivery: Literal["at_least_once", "at_most_once"] = "at_least_once",
        on_pause: Callable[[HookAPIError], object] | None = None,
        on_dead_letter: Callable[[DeadLetter], object] | None = None,
        coalesce: Coalesce | None = None,
    ) -> None:
        if not isinstance(client, AsyncHookClient):
            raise InvalidInputError(
                f"client must be an AsyncHookClient, not {type(client).__name__}."
            )
        if store is None:
            store = MemoryStore()
        elif isinstance(store, str | os.PathLike):
            store = SQLiteStore(store)
        elif not isinstance(store, OutboxStore):
            raise InvalidInputError(
                f"store must be an OutboxStore or a path, not {type(store).__name__}."
            )
        self._client = client
        self._store: OutboxStore = store
        # A queue shared by a fleet (RedisStore): held in Redis, delivered under a lease.
        self._shared: SharedStore | None = store if isinstance(store, SharedStore) else None
        if self._shared is not None and on_full == "drop_oldest":
            raise InvalidInputError(
                "on_full='drop_oldest' is not available with a shared store: another process "
                "may be sending the oldest message. Use 'wait' or 'raise'."
            )
        # Shared only: this process's messages not ended yet, wherever they are delivered.
        self._own: dict[int, Receipt] = {}
        self._after = 0  # the last id claimed from the shared queue in this tenure
        self._lost = False  # the lease ended: record nothing more in this tenure
        self._tenure: anyio.CancelScope | None = None
        self._dead_version = b""
        self._fetch_now: anyio.Event | None = None
        self._store_down = False
        self._handing_over = False  # closing: start no new message, the next holder will
        # A MemoryStore never suspends: its calls can be neither interleaved nor cut off, so
        # they need no lock or shield (the cost of which would show in every message).
        self._instant = type(store) is MemoryStore
        self._max_size = _check_count("max_size", max_size)
        if on_full not in ("wait", "raise", "drop_oldest"):
            raise InvalidInputError(
                f"on_full must be 'wait', 'raise' or 'drop_oldest', not {on_full!r}."
            )
        self._on_full = on_full
        self._concurrency = _check_count("concurrency", concurrency)
        self._drain_timeout = check_timeout("drain_timeout", drain_timeout)
        if delivery not in ("at_least_once", "at_most_once"):
            raise InvalidInputError(
                f"delivery must be 'at_least_once' or 'at_most_once', not {delivery!r}."
            )
        self._at_most_once = delivery == "at_most_once"
        for name, callback in (("on_pause", on_pause), ("on_dead_letter", on_dead_letter)):
            if callback is not None and not callable(callback):
                raise InvalidInputError(f"{name} must be callable.")
        self._on_pause = on_pause
        self._on_dead_letter = on_dead_letter
        if coalesce is not None and not isinstance(coalesce, Coalesce):
            raise InvalidInputError(
                f"coalesce must be a Coalesce or None, not {type(coalesce).__name__}."
            )
        self._coalesce = coalesce
        self._bucket = None if coalesce is None else TokenBucket(coalesce.burst)
        self._queue: deque[Receipt] = deque()
        self._sending: dict[int, Receipt] = {}
        self._dead: dict[int, DeadLetter] = {}
        self._paused = False
        self._pause_error: HookAPIError | None = None
        self._phase: Literal["new", "running", "closing", "closed"] = "new"
        self._tasks: anyio.abc.TaskGroup | None = None
        self._changed: anyio.Event | None = None
        self._put_lock: anyio.Lock | None = None
        self._stopped: anyio.Event | None = None
        self._sender: anyio.CancelScope | None = None
        self._closed_event: anyio.Event | None = None
        self._undelivered: list[Receipt] = []
        # Outcomes the store failed to record (a full disk): id -> new state, None to remove.
        self._unrecorded: dict[int, tuple[StoredState | None, str | None, str | None]] = {}
        self._label = f"outbox of {client.url}"
        # OpenTelemetry, when configured: the span each message was put in, to link its delivery.
        self._telemetry: Instrumentation | None = None
        self._links: dict[int, Link | None] = {}

    def __repr__(self) -> str:
        return (
            f"<Outbox {self._phase} hook_id={self._client.hook_id!r} "
            f"pending={len(self._queue) + len(self._sending)} dead={len(self._dead)}>"
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def pending(self) -> list[Receipt]:
        """The receipts of the messages not yet delivered or given up, oldest first.

        With a :class:`RedisStore`: the messages this process put.
        """
        if self._shared is not None:
            return sorted(self._own.values(), key=lambda r: r.id)
        return sorted([*self._sending.values(), *self._queue], key=lambda r: r.id)

    @property
    def delivering(self) -> bool:
        """Whether this process delivers the queue.

        With a :class:`RedisStore`, while it holds the lease (one process of the fleet at a
        time); with any other store, while the outbox runs.
        """
        if self._shared is None:
            return self._phase == "running"
        return self._tenure is not None and not self._lost

    @property
    def paused(self) -> bool:
        """True while paused, when no message starts until :meth:`resume`."""
        return self._paused

    @property
    def pause_error(self) -> HookAPIError | None:
        """The answer (401, 403, 404, 3xx) or store error that paused the outbox, if any."""
        return self._pause_error

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has started: ``put`` refuses new messages."""
        return self._phase in ("closing", "closed")

    def failed(self) -> list[DeadLetter]:
        """The dead letters (``FAILED`` and ``UNKNOWN`` messages), oldest first.

        With a :class:`RedisStore`: the whole fleet's, as of this process's last look at Redis
        (every ``poll_interval``).
        """
        return [self._dead[id] for id in sorted(self._dead)]

    def pause(self) -> None:
        """Start no new message until :meth:`resume`; those being sent finish first."""
        if not self._paused:
            self._paused = True
            logger.info("hookapi: %s paused", self._label, extra={"hookapi_event": "outbox"})

    def resume(self) -> None:
        """Resume sending after a pause (once the hook is back); the paused message goes first."""
        if self._paused:
            self._paused = False
            self._pause_error = None
            logger.info("hookapi: %s resumed", self._label, extra={"hookapi_event": "outbox"})
            self._notify()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._phase != "new":
            raise OutboxClosedError("This Outbox has already run; create a new one.")
        self._telemetry = self._client._instrumentation()
        if self._telemetry is not None:
            self._telemetry.watch_outbox(self, Outbox._depth)
        if isinstance(self._store, SQLiteStore):
            # The file remembers its hook, so that its messages never go to another one.
            rows = await self._store.open(hook=self._client.url)
        elif self._shared is not None:
            # Bound to the hook by its id (never the secret): only the dead letters come back,
            # as the queue itself is claimed by whichever process takes the lease.
            key = HookKey(
                base_url=str(self._client._base_url).rstrip("/"), hook_id=self._client.hook_id
            )
            rows = await self._shared.open_shared(key)
        else:
            rows = await self._store.open()
        try:
            await self._resume(rows)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._store.aclose()
            raise
        self._stopped = anyio.Event()
        self._closed_event = anyio.Event()
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        try:
            run = self._run_sender if self._shared is None else self._run_shared
            self._sender = await self._tasks.start(run)
        except BaseException as exc:
            await self._tasks.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._phase = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> bool | None:
        handled: bool | None = None
        try:
            await self.aclose()
        finally:
            tasks, self._tasks = self._tasks, None
            if tasks is not None:
                # The senders have stopped: an error from the block is not theirs, and handing
                # it to the task group would only wrap it in an exception group.
                if isinstance(exc_value, anyio.get_cancelled_exc_class()):
                    handled = await tasks.__aexit__(exc_type, exc_value, traceback)
                else:
                    # What a task group with no error returns means nothing for the block's
                    # own error (trio's says True): that error must go on.
                    await tasks.__aexit__(None, None, None)
        return handled

    async def _run_sender(
        self, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # Its own scope: closing cancels the senders, never the task inside `async with`.
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as workers:
                    for _ in range(self._concurrency):
                        workers.start_soon(self._worker)
                    task_status.started(scope)
        finally:
            assert self._stopped is not None
            self._stopped.set()

    async def _resume(self, rows: list[StoredMessage]) -> None:
        """Queue what an earlier run left, in order; settle what it left half-sent."""
        now, wall = anyio.current_time(), time.time()
        for row in rows:
            if row.state is StoredState.FAILED or row.state is StoredState.UNKNOWN:
                self._dead[row.id] = DeadLetter(
                    id=row.id,
                    text=row.text,
                    state=ReceiptState(row.state.value),
                    reason=row.reason or "",
                )
                continue
            if row.state is StoredState.SENDING and self._at_most_once:
                reason = (
                    f"Message {row.id} was being sent when the last run stopped; "
                    "it may or may not have been posted, and at_most_once never resends it."
                )
                await self._store.update(row.id, StoredState.UNKNOWN, reason=reason)
                self._dead[row.id] = DeadLetter(
                    id=row.id, text=row.text, state=ReceiptState.UNKNOWN, reason=reason
                )
                own = self._own.pop(row.id, None)
                if own is not None:  # put by this process, which was sending it
                    error = OutboxClosedError(reason, delivery=Delivery.UNKNOWN)
                    own._settle(ReceiptState.UNKNOWN, error=error)
                logger.warning("hookapi: %s: %s", self._label, reason, extra=_extra(row.id))
                continue
            self._queue.append(self._receipt_for(row, now, wall))
        if self._queue:
            logger.info(
                "hookapi: %s: resuming %d undelivered message(s)",
                self._label,
                len(self._queue),
                extra={"hookapi_event": "outbox"},
            )

    def _receipt_for(self, row: StoredMessage, now: float, wall: float) -> Receipt:
        """The receipt of a stored message: this process's own (shared store), or a new one."""
        own = self._own.get(row.id)
        if own is not None:
            return own
        # A monotonic clock does not survive a restart: a ttl is stored as wall-clock time.
        expires = None if row.expires_at is None else now + (row.expires_at - wall)
        return Receipt(row.id, row.text, expires_at=expires)

    async def aclose(self, drain_timeout: float | None = None) -> list[Receipt]:
        """Stop accepting, deliver what can be until ``drain_timeout``, stop, and report.

        Args:
            drain_timeout: Seconds to keep delivering (default: the outbox's; ``math.inf``:
                until all is delivered). A paused outbox stops at once.

        Returns:
            The receipts of the messages not delivered, oldest first. A durable store keeps
            them for the next start; their :meth:`Receipt.wait` raises
            :class:`OutboxClosedError`. Calling ``aclose`` again returns the same list.
        """
        timeout = self._drain_timeout if drain_timeout is None else drain_timeout
        timeout = check_timeout("drain_timeout", timeout)
        if self._phase == "new":
            return []
        if self._phase != "running":
            assert self._closed_event is not None
            with anyio.CancelScope(shield=True):
                await self._closed_event.wait()  # another task may be closing it right now
            return list(self._undelivered)
        self._phase = "closing"
        self._notify()
        try:
            await self._settle_puts()
            with anyio.move_on_after(timeout):
                while self._holding() and not self._paused:
                    await self._wait_changed()
                if self._shared is not None:
                    # Other processes' messages stay for the next holder; those on the wire
                    # finish first, so that the next holder does not send them again.
                    self._handing_over = True
                    self._notify()
                    while self._sending:
                        await self._wait_changed()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop()
        return list(self._undelivered)

    async def _stop(self) -> None:
        assert self._sender is not None
        assert self._stopped is not None
        self._sender.cancel()
        await self._stopped.wait()
        await self._settle_puts()
        await self._flush_at_close()
        self._undelivered = self.pending
        error = OutboxClosedError(
            "The outbox closed before this message was delivered; a durable store keeps it "
            "for the next start."
        )
        for receipt in self._undelivered:
            receipt._settle(ReceiptState.QUEUED, error=error)
        try:
            await self._store.aclose()
        finally:
            self._phase = "closed"
            assert self._closed_event is not None
            self._closed_event.set()
            self._report_undelivered()

    async def _flush_at_close(self) -> None:
        if not self._unrecorded:
            return
        try:
            await self._flush_records()
        except Exception as exc:
            ids = ", ".join(map(str, sorted(self._unrecorded)))
            logger.warning(
                "hookapi: %s: the store could not record the outcome of message(s) %s (%s); "
                "the next start finds them as they were before (queued ones are sent again)",
                self._label,
                ids,
                exc,
                extra={"hookapi_event": "outbox"},
            )

    async def _settle_puts(self) -> None:
        """Wait for a ``put`` the store is committing, so that its receipt is counted."""
        if self._put_lock is not None:
            # A put holding the lock is committing (shielded, brief) or waiting for room,
            # which the closing phase ends: after it, every put sees the outbox closed.
            async with self._put_lock:
                pass

    def _report_undelivered(self) -> None:
        count = len(self._undelivered)
        if not count:
            return
        if self._shared is not None:
            fate = f"{self._store!r} keeps them, and the fleet's deliverer delivers them"
        elif isinstance(self._store, MemoryStore):
            fate = (
                "they are kept in memory only, and are lost when this process ends unless a "
                "new Outbox is given the same MemoryStore"
            )
        else:
            fate = f"{self._store!r} keeps them for the next start"
        logger.warning(
            "hookapi: %s closed with %d message(s) undelivered: %s",
            self._label,
            count,
            fate,
            extra={"hookapi_event": "outbox", "hookapi_undelivered": count},
        )

    # -- accepting -----------------------------------------------------------------------------

    async def put(self, text: str, *, ttl: float | None = None) -> Receipt:
        """Accept a message for delivery; return its receipt (after the commit, if durable).

        Args:
            text: The message, checked as :meth:`AsyncHookClient.post_message` checks it.
            ttl: Seconds after which it is dropped if not yet sent (default: never).

        Raises:
            InvalidInputError: ``text`` or ``ttl`` is not valid (nothing is queued).
            OutboxFullError: ``max_size`` messages are held and ``on_full="raise"``.
            OutboxClosedError: The outbox is not running (not entered, or closing).
            StoreError: The store could not keep the message (nothing is queued); with a
                :class:`RedisStore`, :class:`StoreUnavailableError` when Redis is away.
        """
        encode_message(text)
        ttl = None if ttl is None else check_timeout("ttl", ttl)
        self._check_open()
        if self._instant and len(self._queue) + len(self._sending) < self._max_size:
            # A cancellation point, not a scheduling one (as asyncio.Queue.put when not
            # full): a producer's burst is taken in one go, and the senders then drain it.
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._check_open()
            receipt = await self._accept(text, ttl)
        else:
            if self._put_lock is None:
                self._put_lock = anyio.Lock()
            # One put at a time from here: ids, the queue and the store agree on the order.
            async with self._put_lock:
                await self._make_room()
                # Shielded: once the store has committed the message, it must reach the queue.
                with anyio.CancelScope(shield=True):
                    receipt = await self._accept(text, ttl)
        if self._telemetry is not None:
            self._links[receipt.id] = self._telemetry.link()
        self._log_state(receipt)
        self._notify()
        return receipt

    def _held(self) -> int:
        if self._shared is not None:
            return len(self._own)
        return len(self._queue) + len(self._sending)

    def _holding(self) -> bool:
        """Whether messages this outbox answers for are not ended yet."""
        if self._shared is not None:
            return bool(self._own)
        return bool(self._queue or self._sending)

    def _depth(self) -> int:
        """Messages held and not delivered yet (queued or being sent)."""
        return len(self._queue) + len(self._sending)

    async def _accept(self, text: str, ttl: float | None) -> Receipt:
        now = anyio.current_time()
        wall = None if ttl is None else time.time() + ttl
        id = await self._store.add(text, expires_at=wall)
        receipt = Receipt(id, text, expires_at=None if ttl is None else now + ttl)
        if self._shared is not None:
            # In Redis now: the deliverer (this process or another) claims it from there.
            self._own[id] = receipt
            self._wake_fetch()
        else:
            self._queue.append(receipt)
        return receipt

    def _shield(self) -> AbstractContextManager[object]:
        """Protect a store call from cancellation (a MemoryStore's cannot be cut off)."""
        return nullcontext() if self._instant else anyio.CancelScope(shield=True)

    def _check_open(self) -> None:
        if self._phase != "running":
            state = "is not started (use async with)" if self._phase == "new" else "is closed"
            raise OutboxClosedError(f"The {self._label} {state}; the message was not accepted.")

    async def _make_room(self) -> None:
        while self._held() >= self._max_size:
            self._check_open()
            if self._on_full == "raise":
                raise OutboxFullError(
                    f"The {self._label} holds {self._max_size} messages, its max_size."
                )
            if self._on_full == "drop_oldest" and self._queue:
                oldest = self._queue.popleft()
                with anyio.CancelScope(shield=True):
                    await self._drop(
                        oldest, "newer messages needed the room (on_full='drop_oldest')"
                    )
                continue
            await self._wait_changed()
        self._check_open()

    # -- sending -------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            receipt, folded, text = await self._next()
            await self._deliver(receipt, folded, text)

    async def _next(self) -> tuple[Receipt, list[Receipt], str]:
        while True:
            # `_lost`: this process's turn to deliver ended (its tenure is being cancelled, but
            # the next post could go out before the cancellation reaches an await).
            while self._paused or not self._queue or self._handing_over or self._lost:
                await self._wait_changed()
            if self._coalesce is None:
                break
            assert self._bucket is not None
            now, pace = anyio.current_time(), self._coalesce.pace(self._client.rate_limit)
            wait = self._bucket.wait_time(now, pace)
            if wait <= 0:
                break
            # Woken early by a pause or a put, to look again; never to send before a token.
            with anyio.move_on_after(wait):
                await self._wait_changed()
        receipt = self._queue.popleft()
        folded: list[Receipt] = []
        text = receipt.text
        if self._coalesce is not None:
            assert self._bucket is not None
            now, pace = anyio.current_time(), self._coalesce.pace(self._client.rate_limit)
            text, folded = self._fold(receipt, self._bucket.available(now, pace))
            self._bucket.take(now, pace)
        for each in (receipt, *folded):
            self._sending[each.id] = each
        self._notify()
        return receipt, folded, text

    def _fold(self, head: Receipt, tokens: float) -> tuple[str, list[Receipt]]:
        """Join the head with the messages behind it when more wait than can be posted now."""
        assert self._coalesce is not None
        known = self._client.rate_limit
        capacity = tokens
        if known is not None and known.remaining is not None:
            capacity = min(capacity, known.remaining)
        if len(self._queue) + 1 <= capacity or head.expires_at is not None:
            return head.text, []
        # Only messages without a ttl fold: a digest has no single moment to be dropped at.
        run = [head]
        for receipt in self._queue:
            if receipt.expires_at is not None or len(run) >= _MAX_FOLD:
                break
            run.append(receipt)
        if len(run) < 2:
            return head.text, []
        max_bytes = self._coalesce.max_bytes
        try:
            text, count = checked_join(self._coalesce.join, run, max_bytes)
        except Exception as exc:
            logger.warning(
                "hookapi: %s: Coalesce.join failed (%s); message %d goes alone",
                self._label,
                exc,
                head.id,
                extra=_extra(head.id),
            )
            return head.text, []
        if count < 2:
            return head.text, []
        folded = [self._queue.popleft() for _ in range(count - 1)]
        logger.info(
            "hookapi: %s: messages %d to %d go as one digest",
            self._label,
            head.id,
            folded[-1].id,
            extra={**_extra(head.id), "hookapi_folded": count},
        )
        return text, folded

    async def _deliver(self, receipt: Receipt, folded: list[Receipt], text: str) -> None:
        """Post one message (or digest) until delivered, given up, or handed back."""
        settled = paused = False
        telemetry = self._telemetry
        try:
            if telemetry is None:
                settled = await self._attempt_all(receipt, folded, text)
            else:
                with telemetry.delivering(self._links.get(receipt.id), receipt.id):
                    settled = await self._attempt_all(receipt, folded, text)
            if settled:
                for each in (receipt, *folded):
                    self._links.pop(each.id, None)
            paused = not settled
        finally:
            if not settled:
                # Paused, or cancelled (the outbox is closing): the messages go back in line.
                with anyio.CancelScope(shield=True):
                    for each in (receipt, *folded):
                        await self._hand_back(each, cancelled=not paused)

    async def _attempt_all(self, receipt: Receipt, folded: list[Receipt], text: str) -> bool:
        for each in (receipt, *folded):
            each.state = ReceiptState.SENDING
            self._log_state(each)
        if self._at_most_once:
            try:
                for each in (receipt, *folded):
                    await self._store.update(each.id, StoredState.SENDING)
            except StoreError as exc:
                # Unrecorded, a crash mid-send would resend it: at_most_once must not send.
                if self._shared is not None:
                    # Shared: the lease ended or Redis is away; stop delivering until back.
                    self._lose(exc)
                else:
                    self._pause(exc)
                return False
        rounds = 0
        while True:
            now = anyio.current_time()
            if receipt.expires_at is not None and now >= receipt.expires_at:
                await self._finish_dropped(receipt, "its ttl passed before it could be sent")
                return True
            deadline = math.inf if receipt.expires_at is None else receipt.expires_at - now
            if self._lost:
                return False  # its turn ended between two attempts: the next holder sends it
            try:
                result = await self._client.post_message(text, deadline=deadline)
            except HookAPIError as exc:
                rounds += 1
                verdict = self._verdict(exc, receipt)
                if verdict == "pause":
                    self._pause(exc)
                    return False
                if verdict == "drop":
                    await self._finish_dropped(receipt, "its ttl passed before it could be sent")
                    return True
                if verdict in ("failed", "unknown"):
                    for each in (receipt, *folded):
                        await self._finish_dead(each, exc, ReceiptState(verdict))
                    return True
                delay = self._client.retry_policy.backoff(rounds, exc)
                logger.info(
                    "hookapi: %s: message %d not sent yet (%s); trying again in %.3f s",
                    self._label,
                    receipt.id,
                    type(exc).__name__,
                    delay,
                    extra={**_extra(receipt.id), "hookapi_delay": delay},
                )
                await anyio.sleep(delay)
            else:
                digest = receipt.id if folded else None
                for each in (receipt, *folded):
                    await self._finish_delivered(each, result, digest=digest)
                return True

    def _verdict(
        self, exc: HookAPIError, receipt: Receipt
    ) -> Literal["pause", "drop", "failed", "unknown", "retry"]:
        expired = receipt.expires_at is not None and (
            anyio.current_time() >= receipt.expires_at
            or (isinstance(exc, RateLimitError) and exc.local)
        )
        if isinstance(exc, ClientClosedError):
            return "pause"
        if isinstance(exc, APIStatusError) and exc.status_code in PAUSE_STATUSES:
            return "pause"
        if exc.delivery is Delivery.UNKNOWN:
            return "unknown" if self._at_most_once or expired else "retry"
        if expired:
            return "drop"
        if isinstance(exc, APIStatusError):
            transient = exc.status_code == 429 or exc.status_code >= 500
            if transient or exc.status_code in self._client.retry_policy.retry_statuses:
                return "retry"
            return "failed"
        return "retry" if isinstance(exc, APIConnectionError) else "failed"

    # -- outcomes ------------------------------------------------------------------------------

    async def _finish_delivered(
        self, receipt: Receipt, result: PostResult, *, digest: int | None = None
    ) -> None:
        outcome = f"delivered|{result.status_code}|{result.attempts}|{result.elapsed!r}"
        await self._record(receipt.id, None, outcome=outcome)
        self._sending.pop(receipt.id, None)
        receipt.digest = digest
        receipt._settle(ReceiptState.DELIVERED, result=result, error=None)
        self._settle_own(receipt)
        self._log_state(receipt)
        self._notify()

    async def _finish_dead(
        self, receipt: Receipt, error: HookAPIError, state: ReceiptState
    ) -> None:
        reason = str(error)
        stored = StoredState.FAILED if state is ReceiptState.FAILED else StoredState.UNKNOWN
        await self._record(receipt.id, stored, reason)
        self._sending.pop(receipt.id, None)
        self._dead[receipt.id] = DeadLetter(
            id=receipt.id, text=receipt.text, state=state, reason=reason, error=error
        )
        receipt._settle(state, error=error)
        self._settle_own(receipt)
        if self._telemetry is not None:
            self._telemetry.dead_letter()
        logger.warning(
            "hookapi: %s: message %d is a dead letter (%s): %s",
            self._label,
            receipt.id,
            state.value,
            reason,
            extra={**_extra(receipt.id), "hookapi_state": state.value},
        )
        self._notify()
        if self._on_dead_letter is not None:
            self._on_dead_letter(self._dead[receipt.id])

    def _settle_own(self, receipt: Receipt) -> None:
        """Settle this process's receipt of a shared message as ``receipt`` was settled.

        The deliverer may claim a message this process put before its ``put`` has returned
        (and so before the receipt is known by its id): the claim then made a receipt of its
        own, and the put's receipt takes the same end here.
        """
        own = self._own.pop(receipt.id, None)
        if own is not None and own is not receipt:
            own.digest = receipt.digest
            own._settle(receipt.state, result=receipt.result, error=receipt.error)

    async def _finish_dropped(self, receipt: Receipt, why: str) -> None:
        self._sending.pop(receipt.id, None)
        await self._drop(receipt, why)

    async def _drop(self, receipt: Receipt, why: str) -> None:
        await self._record(receipt.id, None, outcome=f"dropped|{why}")
        receipt._settle(ReceiptState.DROPPED, error=dropped_error(receipt, why))
        self._settle_own(receipt)
        self._links.pop(receipt.id, None)
        logger.warning(
            "hookapi: %s: message %d dropped: %s",
            self._label,
            receipt.id,
            why,
            extra={**_extra(receipt.id), "hookapi_state": "dropped"},
        )
        self._notify()

    async def _hand_back(self, receipt: Receipt, *, cancelled: bool) -> None:
        """Put an unfinished message back at its place in line, or settle it as unknown."""
        self._sending.pop(receipt.id, None)
        if self._lost:
            # The lease ended: the queue is another process's now, and Redis still has the
            # message (at_most_once: marked as being sent, so the next holder reports it).
            receipt._requeue()
            return
        if self._at_most_once and cancelled:
            # Cancelled mid-send: it may be on the wire, and at_most_once must not resend it.
            error = OutboxClosedError(
                f"Message {receipt.id} was being sent when the outbox stopped; it may or may "
                "not have been posted.",
                delivery=Delivery.UNKNOWN,
            )
            await self._finish_dead(receipt, error, ReceiptState.UNKNOWN)
            return
        if self._at_most_once:
            await self._record(receipt.id, StoredState.QUEUED)
        receipt._requeue()
        index = 0
        while index < len(self._queue) and self._queue[index].id < receipt.id:
            index += 1
        self._queue.insert(index, receipt)
        self._log_state(receipt)
        self._notify()

    def _pause(self, error: HookAPIError) -> None:
        first = self._pause_error is None
        self._paused = True
        self._pause_error = self._pause_error or error
        if first:
            logger.warning(
                "hookapi: %s paused: %s Queued messages wait until resume().",
                self._label,
                error,
                extra={"hookapi_event": "outbox"},
            )
            self._notify()
            if self._on_pause is not None:
                self._on_pause(error)

    async def _record(
        self,
        id: int,
        state: StoredState | None,
        reason: str | None = None,
        *,
        outcome: str | None = None,
    ) -> None:
        """Record a message's outcome (``None``: remove it); a store error does not stop us.

        The outcome is final in memory whatever the store says: a delivered message is never
        sent again in this run. One the store could not record (a full disk) is tried again
        at the next record and at close; only a restart before then would find it as it was.
        With a shared store, an error ends this process's turn to deliver instead.
        """
        self._unrecorded[id] = (state, reason, outcome)
        with self._shield():
            try:
                await self._flush_records()
            except StoreError as exc:
                if self._shared is not None:
                    # The lease ended, or Redis is away: stop at once rather than post more
                    # that cannot be recorded (each would be sent again by the next holder).
                    self._lose(exc)
                    return
                logger.warning(
                    "hookapi: %s: could not record message %d as %s (%s); the outbox goes on "
                    "and records it at its next write",
                    self._label,
                    id,
                    "done" if state is None else state.value,
                    exc,
                    extra=_extra(id),
                )

    async def _flush_records(self) -> None:
        for id in sorted(self._unrecorded):
            found = self._unrecorded.get(id)
            if found is None:
                continue  # another sender recorded it meanwhile
            state, reason, outcome = found
            if state is None and self._shared is not None:
                await self._shared.finish(id, outcome or "delivered|200|1|0")
            elif state is None:
                await self._store.remove(id)
            else:
                await self._store.update(id, state, reason=reason)
            if self._unrecorded.get(id) == found:
                del self._unrecorded[id]

    # -- a queue shared by a fleet (RedisStore) ------------------------------------------------

    async def _run_shared(
        self, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow outcomes and dead letters; take the lease whenever free, and deliver then."""
        shared = self._shared
        assert shared is not None
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._follow)
                    task_status.started(scope)
                    while True:
                        await self._take_lease()
                        try:
                            await self._deliver_shared()
                        finally:
                            with anyio.CancelScope(shield=True):
                                await shared.release()
                                self._leave_tenure()
        finally:
            assert self._stopped is not None
            self._stopped.set()

    async def _take_lease(self) -> None:
        """Wait until this process holds the lease (when the holder's ends, or Redis is back)."""
        shared = self._shared
        assert shared is not None
        while True:
            # Every poll_interval: a holder that closes releases the lease, and the fleet
            # takes over at once; one that dies leaves it to run out (`wait`).
            pause = shared.poll_interval
            try:
                wait = await shared.acquire()
            except StoreError as exc:
                self._store_trouble(exc)
                pause *= 10
            else:
                self._store_back()
                if wait is None:
                    return
                pause = max(min(wait, pause), pause / 10)
            await anyio.sleep(pause)

    async def _deliver_shared(self) -> None:
        """One tenure: claim the queue and deliver it until the lease ends or the outbox stops."""
        shared = self._shared
        assert shared is not None
        self._lost = False
        with anyio.CancelScope() as tenure:
            self._tenure = tenure
            try:
                rows = await shared.claim(0)
                self._after = max((row.id for row in rows), default=0)
                logger.info(
                    "hookapi: %s: this process delivers the shared queue (%d message(s) in it)",
                    self._label,
                    len(rows),
                    extra={"hookapi_event": "outbox"},
                )
                await self._resume(rows)
            except StoreError as exc:
                self._lose(exc)
                return
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_lease)
                group.start_soon(self._fetch)
                for _ in range(self._concurrency):
                    group.start_soon(self._worker)

    def _leave_tenure(self) -> None:
        """Forget the local copy of the queue: Redis has it, for the next holder."""
        for receipt in (*self._queue, *self._sending.values()):
            receipt._requeue()
        self._queue.clear()
        self._sending.clear()
        self._unrecorded.clear()
        self._tenure = None
        self._after = 0
        self._notify()

    def _lose(self, error: BaseException) -> None:
        """Stop delivering at once: the lease ended, or Redis cannot be reached."""
        if self._lost or self._tenure is None:
            return
        self._lost = True
        logger.warning(
            "hookapi: %s: this process stops delivering the shared queue (%s); another "
            "process takes over when the lease ends, or this one when Redis is back",
            self._label,
            error,
            extra={"hookapi_event": "outbox"},
        )
        self._tenure.cancel()

    async def _keep_lease(self) -> None:
        shared = self._shared
        assert shared is not None
        while True:
            await anyio.sleep(shared.lease / 3)
            if not await shared.renew():
                self._lose(LeaseLostError("the lease could not be renewed", path=repr(shared)))
                return

    async def _fetch(self) -> None:
        """Claim what the fleet put since the last look, at once when this process puts."""
        shared = self._shared
        assert shared is not None
        while True:
            try:
                rows = await shared.claim(self._after)
            except LeaseLostError as exc:
                self._lose(exc)
                return
            except StoreError as exc:
                self._store_trouble(exc)
                rows = []
            else:
                self._store_back()
            if rows:
                now, wall = anyio.current_time(), time.time()
                for row in rows:
                    self._after = max(self._after, row.id)
                    self._queue.append(self._receipt_for(row, now, wall))
                self._notify()
                continue  # there may be more already
            self._fetch_now = anyio.Event()
            with anyio.move_on_after(shared.poll_interval):
                await self._fetch_now.wait()
            self._fetch_now = None

    def _wake_fetch(self) -> None:
        if self._fetch_now is not None:
            self._fetch_now.set()

    async def _follow(self) -> None:
        """Learn how this process's messages ended elsewhere, and the fleet's dead letters."""
        shared = self._shared
        assert shared is not None
        while True:
            ids = sorted(self._own)[:_SYNC_BATCH]
            try:
                version, outcomes, letters = await shared.sync(ids, self._dead_version)
            except StoreError as exc:
                self._store_trouble(exc)
            else:
                self._store_back()
                for id, outcome in outcomes.items():
                    self._settle_remote(id, outcome)
                if letters is not None:
                    self._dead_version = version
                    old = self._dead
                    self._dead = {
                        row.id: old.get(row.id)
                        or DeadLetter(
                            id=row.id,
                            text=row.text,
                            state=ReceiptState(row.state.value),
                            reason=row.reason or "",
                        )
                        for row in letters
                    }
                if outcomes or letters is not None:
                    self._notify()
            await anyio.sleep(shared.poll_interval)

    def _settle_remote(self, id: int, outcome: str) -> None:
        """Settle this process's receipt with what the process that delivered it recorded."""
        if id in self._sending:
            return  # this process is ending it right now, with the answer itself
        receipt = self._own.pop(id, None)
        if receipt is None or receipt.state.is_final:
            return
        kind, _, rest = outcome.partition("|")
        if kind == "delivered":
            status, attempts, elapsed = rest.split("|")
            result = PostResult(
                status_code=int(status),
                attempts=int(attempts),
                rate_limit=None,
                elapsed=float(elapsed),
            )
            receipt._settle(ReceiptState.DELIVERED, result=result, error=None)
        elif kind == "dropped":
            receipt._settle(ReceiptState.DROPPED, error=dropped_error(receipt, rest))
        else:
            state = ReceiptState.UNKNOWN if kind == "unknown" else ReceiptState.FAILED
            delivery = Delivery.UNKNOWN if kind == "unknown" else Delivery.REJECTED
            receipt._settle(state, error=HookAPIError(rest, delivery=delivery))
        self._log_state(receipt)

    def _store_trouble(self, error: StoreError) -> None:
        if not self._store_down:
            self._store_down = True
            logger.warning(
                "hookapi: %s: %s",
                self._label,
                error,
                extra={"hookapi_event": "outbox"},
            )

    def _store_back(self) -> None:
        if self._store_down:
            self._store_down = False
            logger.warning(
                "hookapi: %s: %r answers again",
                self._label,
                self._store,
                extra={"hookapi_event": "outbox"},
            )

    async def _retry_shared(self, id: int, ttl: float | None) -> Receipt:
        shared = self._shared
        assert shared is not None
        ttl = None if ttl is None else check_timeout("ttl", ttl)
        self._check_open()
        wall = None if ttl is None else time.time() + ttl
        # One script: two processes retrying the same dead letter queue it once.
        found = await shared.retry(id, expires_at=wall)
        self._dead.pop(id, None)
        if found is None:
            raise KeyError(f"The {self._label} has no dead letter {id}.")
        new_id, text = found
        expires = None if ttl is None else anyio.current_time() + ttl
        receipt = self._own[new_id] = Receipt(new_id, text, expires_at=expires)
        self._wake_fetch()
        self._notify()
        return receipt

    # -- dead letters --------------------------------------------------------------------------

    async def retry(self, letter: DeadLetter | int, *, ttl: float | None = None) -> Receipt:
        """Put a dead letter back at the end of the queue; return its new receipt.

        Raises:
            KeyError: There is no such dead letter.
            OutboxClosedError: The outbox is not running.
        """
        id = letter.id if isinstance(letter, DeadLetter) else letter
        if self._shared is not None:
            return await self._retry_shared(id, ttl)
        dead = self._dead[id]
        receipt = await self.put(dead.text, ttl=ttl)
        await self.discard(id)
        return receipt

    async def discard(self, letter: DeadLetter | int) -> None:
        """Forget a dead letter for good (from the store too).

        Raises:
            KeyError: There is no such dead letter.
        """
        id = letter.id if isinstance(letter, DeadLetter) else letter
        if self._shared is not None:
            self._check_open()
            # Any process's dead letter, as Redis has it (another may have discarded it).
            found = await self._shared.discard(id)
            self._dead.pop(id, None)
            if not found:
                raise KeyError(f"The {self._label} has no dead letter {id}.")
            return
        if id not in self._dead:
            raise KeyError(f"The {self._label} has no dead letter {id}.")
        self._check_open()
        await self._store.remove(id)
        del self._dead[id]
        self._unrecorded.pop(id, None)

    # -- plumbing ------------------------------------------------------------------------------

    async def _wait_changed(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _log_state(self, receipt: Receipt) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "hookapi: %s: message %d %s",
                self._label,
                receipt.id,
                receipt.state.value,
                extra={**_extra(receipt.id), "hookapi_state": receipt.state.value},
            )


#: This process's messages asked about at most in one look at the shared store.
_SYNC_BATCH = 1000

#: Messages one digest may carry at most, however small they are.
_MAX_FOLD = 10_000


def _extra(id: int) -> dict[str, object]:
    return {"hookapi_event": "outbox", "hookapi_message_id": id}


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, not {type(value).__name__}.")
    if value < 1:
        raise InvalidInputError(f"{name} must be at least 1, not {value}.")
    return value
