"""First come, first served: the per-process queue of callers in front of a hook's quota store.

The store decides whether a request may start; the queue decides *who* asks. Callers line up
in the order they asked, only the one at the head asks the store, and a freed slot (a settle
or a refund) wakes the head alone, so a decision costs the same whether 1 or 1,000 tasks wait.
The queue is per process and per event loop, and the same for every store.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections import deque

import anyio

from ._headers import RateLimit
from ._loops import current_loop
from ._memory import HookState, MemoryQuota
from ._store import HookKey, HookQuota, NotNow, QuotaAnswer, QuotaStore, Reservation

__all__ = ["QuotaGate", "QuotaWaitTooLong", "default_store", "gate_for"]

logger = logging.getLogger("hookapi")


class QuotaWaitTooLong(Exception):
    """The quota cannot come back before the deadline.

    Attributes:
        wait: The least time it needs, in seconds, when known (``inf``: never, a quota of 0).
    """

    def __init__(self, wait: float | None) -> None:
        super().__init__(wait)
        self.wait = wait


class _Waiter:
    __slots__ = ("event", "gone")

    def __init__(self) -> None:
        self.event: anyio.Event | None = None
        self.gone = False


class QuotaGate:
    """The callers waiting for one hook's quota in this process, served in arrival order.

    Args:
        quota: The hook's quota in its store.
        store: The store it came from (kept alive as long as the gate is).
        label: How log records name the hook (never the secret).
    """

    def __init__(
        self, quota: HookQuota, *, store: QuotaStore | None = None, label: str = ""
    ) -> None:
        self.quota = quota
        self.store = store
        self._label = label
        # Set by a change the head could not be woken for (it was asking the store).
        self._changed = False
        self._queue: deque[_Waiter] = deque()
        # When the head will ask the store again (None: when an answer comes).
        self._next_try_at: float | None = None
        # Times the head was refused for the quota: a waiter that saw it grow waited for it.
        self._refusals = 0

    def __repr__(self) -> str:
        return f"<QuotaGate {self._label} waiting={len(self._queue)}>"

    @property
    def waiting(self) -> int:
        """Callers in the queue (some may have left and not been swept out yet)."""
        return len(self._queue)

    def estimate(self) -> float | None:
        """Seconds until the head asks the store again, when known."""
        if self._next_try_at is None:
            return None
        return max(0.0, self._next_try_at - anyio.current_time())

    async def acquire(self, *, deadline: float = math.inf) -> Reservation:
        """Wait for this caller's turn and a slot, in the order callers arrived.

        Raises:
            QuotaWaitTooLong: No slot can come before ``deadline`` (raised as soon as that is
                known, without waiting), or ``deadline`` passed while waiting.
        """
        queue = self._queue
        answer: NotNow | None = None
        if not queue:
            # Nobody waits: ask at once (a store that never awaits keeps this atomic).
            self._changed = False
            reply = await self.quota.reserve()
            if isinstance(reply, Reservation):
                return reply
            # Something changed while the store answered, or others lined up: ask again.
            if not self._changed and not queue:
                answer = reply
        waiter = _Waiter()
        queue.append(waiter)
        return await self._wait(waiter, answer, deadline)

    def take_now(self) -> Reservation | None:
        """A reservation at once, without a coroutine, if nobody waits and the store has one.

        Only for a store whose hook state answers synchronously (:class:`HookState`, the
        :class:`MemoryQuota`'s): anything else, or no slot now, returns None, and the caller
        waits its turn with :meth:`acquire`, which asks again.
        """
        quota = self.quota
        if self._queue or type(quota) is not HookState:
            return None
        self._changed = False
        reply = quota.reserve_now()
        return reply if type(reply) is Reservation else None

    def refund_now(self, reservation: Reservation) -> None:
        """:meth:`refund` for a :class:`HookState`'s reservation, without a coroutine."""
        quota = self.quota
        assert type(quota) is HookState
        try:
            quota.refund_now(reservation)
        finally:
            self.wake()

    def settle_now(
        self,
        reservation: Reservation,
        status_code: int | None,
        rate_limit: RateLimit | None,
        retry_after: float | None = None,
    ) -> None:
        """:meth:`settle` for a :class:`HookState`'s reservation, with the answer's parts.

        ``status_code`` None: no answer came. Without a coroutine or a :class:`QuotaAnswer`.
        """
        quota = self.quota
        assert type(quota) is HookState
        try:
            quota.settle_now(reservation, status_code, rate_limit, retry_after)
        finally:
            self.wake()

    async def _wait(self, waiter: _Waiter, answer: NotNow | None, deadline: float) -> Reservation:
        queue = self._queue
        # Every call held back for the quota logs its wait (one record at least), not only
        # the head of the queue: ahead of the wait when the quota is known to be used up,
        # else once its turn comes, if the quota refused the calls ahead of it meanwhile.
        logged = False
        entered, refusals = anyio.current_time(), self._refusals
        try:
            while True:
                now = anyio.current_time()
                if queue[0] is waiter:
                    if answer is None:
                        self._changed = False
                        reply = await self.quota.reserve()
                        if isinstance(reply, Reservation):
                            if not logged and self._refusals != refusals:
                                self._log_waited(anyio.current_time() - entered)
                            return reply
                        answer = reply
                        now = anyio.current_time()
                    retry_in = answer.retry_in
                    if retry_in is None:
                        wake_at = deadline
                        self._next_try_at = None
                        self._log_probe_wait(answer.reason)
                    else:
                        wake_at = now + retry_in
                        self._next_try_at = wake_at
                        self._refusals += 1
                        if wake_at > deadline:
                            raise QuotaWaitTooLong(retry_in)
                        self._log(retry_in, answer.reason)
                        logged = True
                    answer = None
                else:
                    if self._next_try_at is not None and self._next_try_at > deadline:
                        raise QuotaWaitTooLong(self._next_try_at - now)
                    if not logged and self._next_try_at is not None:
                        logged = True
                        self._log(self._next_try_at - now, "behind earlier calls")
                    wake_at = deadline
                if now >= deadline:
                    raise QuotaWaitTooLong(self.estimate())
                if self._changed and queue[0] is waiter:
                    continue
                event = waiter.event = anyio.Event()
                with anyio.move_on_after(wake_at - now):
                    await event.wait()
                waiter.event = None
        finally:
            self._leave(waiter)

    def _log(self, delay: float, reason: str) -> None:
        logger.info(
            "hookapi: throttling %s: waiting up to %.3f s for the quota (%s)",
            self._label,
            delay,
            reason,
            extra={"hookapi_event": "throttle", "hookapi_delay": delay},
        )

    def _log_waited(self, waited: float) -> None:
        logger.info(
            "hookapi: throttling %s: waited %.3f s behind earlier calls for the quota",
            self._label,
            waited,
            extra={"hookapi_event": "throttle", "hookapi_delay": waited},
        )

    def _log_probe_wait(self, reason: str) -> None:
        # Not a throttle wait: the quota is unknown until an answer in flight comes back.
        logger.debug(
            "hookapi: %s: waiting for an answer before sending more (%s)",
            self._label,
            reason,
            extra={"hookapi_event": "probe_wait"},
        )

    def _leave(self, waiter: _Waiter) -> None:
        queue = self._queue
        if queue and queue[0] is waiter:
            queue.popleft()
            while queue and queue[0].gone:
                queue.popleft()
            self.wake()
        else:
            waiter.gone = True

    def wake(self) -> None:
        """Wake the caller at the head of the queue, if it waits: something changed."""
        queue = self._queue
        event = queue[0].event if queue else None
        if event is not None:
            event.set()
        else:
            self._changed = True  # the head (or a caller about to be) is asking the store

    async def refund(self, reservation: Reservation) -> None:
        """Give the slot back (the request never reached the network) and wake the head."""
        try:
            await self.quota.refund(reservation)
        finally:
            self.wake()

    async def settle(self, reservation: Reservation, answer: QuotaAnswer | None) -> None:
        """End the reservation with the service's answer (or none) and wake the head."""
        try:
            await self.quota.settle(reservation, answer)
        finally:
            self.wake()


_default: MemoryQuota | None = None
# Per event loop, per (store, hook): the gate. Weak both ways, so a finished loop and a hook
# no client uses any more are freed.
_gates: weakref.WeakKeyDictionary[
    object, weakref.WeakValueDictionary[tuple[int, HookKey], QuotaGate]
] = weakref.WeakKeyDictionary()


def default_store() -> MemoryQuota:
    """The process's default store: every client given no ``quota=`` shares it."""
    global _default  # noqa: PLW0603
    if _default is None:
        _default = MemoryQuota()
    return _default


def gate_for(store: QuotaStore, key: HookKey) -> QuotaGate:
    """The gate of hook ``key`` in ``store`` on the running event loop, shared process-wide.

    The caller must keep a strong reference for as long as it uses the gate: that is what
    keeps the hook's state alive (and what lets it go once no client uses it).
    """
    loop = current_loop()
    gates = _gates.get(loop)
    if gates is None:
        gates = _gates[loop] = weakref.WeakValueDictionary()
    index = (id(store), key)
    gate = gates.get(index)
    if gate is None or gate.store is not store:
        gate = QuotaGate(store.hook(key), store=store, label=str(key))
        gates[index] = gate
    return gate
