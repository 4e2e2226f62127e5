"""The quota store protocol: where a hook's quota is kept, and what a store must answer.

A store keeps the quota state of hooks: how many requests may start now, which reservations
are still out, what the last answers said. The in-memory store (:class:`MemoryQuota`) is the
default and keeps that state per process; a shared store (Redis, for several processes on one
hook) implements the same protocol, so the client never needs to know which one it talks to.

The contract, for anyone implementing a store:

* **Async where I/O may be.** :meth:`HookQuota.reserve`, :meth:`HookQuota.refund`,
  :meth:`HookQuota.settle` and :meth:`HookQuota.budget` are coroutines, so a networked store
  can await its server. A store for one process may simply never await anything: then it
  costs no trip through the event loop. :meth:`QuotaStore.hook` is synchronous and cheap (it
  runs once per hook and event loop, and must do no I/O).
* **Atomic decisions.** ``reserve`` decides and books in one step: two concurrent ``reserve``
  calls (in one process or several) never both take the last slot. A Redis store does it in
  one Lua script, with time from the server's ``TIME`` so that every process agrees. A store
  that awaits must not lose a booking to a cancellation of its caller: if it is cancelled
  after booking and before returning the reservation, it gives the slot back itself.
* **Never block.** ``reserve`` answers at once: a :class:`Reservation`, or :class:`NotNow`
  saying when to ask again (``retry_in`` seconds, measured on the store's own clock from the
  moment it answered). Waiting is the caller's job: the client keeps, per process, one
  first-come-first-served queue of callers per hook in front of the store, and only the
  caller at its head asks the store. The queue lives outside the store because its order is
  a property of one process's tasks, and it works the same for every store.
* **Every reservation ends exactly once**, in one of two ways:

  - :meth:`HookQuota.refund`: no byte of the request can have reached the network
    (cancelled or failed while waiting for a connection, connecting, or before the first
    byte was written). The slot comes back as if it had never been taken.
  - :meth:`HookQuota.settle`: the request may have reached the service. With the answer
    (:class:`QuotaAnswer`: its status, its ``X-Rate-Limit-*`` headers, its ``Retry-After``),
    or with ``None`` when no answer came (cancelled or failed after the first byte was
    written): then it counts as used, unconfirmed, until an answer of the service says more.

* **The service's word is the authority.** ``Remaining`` and ``Used`` of every answer
  correct the store's estimate; a 429 blocks every caller for its ``Retry-After`` (or the
  store's own probing schedule), after which one *probe* request (``Reservation.probe``)
  goes alone and its answer decides.
* **Refusals it can foresee.** When no slot can come back before a caller's deadline, the
  queue learns it from ``NotNow.retry_in`` and refuses locally, without sending.

Nothing here imports the client or the HTTP stack; stores see only the values defined here
and :class:`~hookapi._quota.RateLimit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._headers import RateLimit

__all__ = [
    "HookKey",
    "HookQuota",
    "NotNow",
    "QuotaAnswer",
    "QuotaPolicy",
    "QuotaStore",
    "Reservation",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HookKey:
    """Which hook a quota belongs to: every client of the same key shares one quota.

    It never holds the secret: the secret authenticates, it does not name the hook.

    Attributes:
        base_url: The service's base URL, as the client normalised it.
        hook_id: The hook's id.
    """

    base_url: str
    hook_id: str

    def __str__(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.hook_id}"


def _check_seconds(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"QuotaPolicy.{name} must be a number of seconds.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"QuotaPolicy.{name} must be a finite number > 0, not {value!r}.")


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaPolicy:
    """How a store probes a quota it cannot see coming back, and how much that may cost.

    The service sends no reset time. When the budget is spent by requests the client cannot
    see leave (another process's, or its own that were never answered), or after a 429,
    waiting a worst-case hour would be slow; sending freely would storm the service. So one
    *probe* request goes alone, ``probe_interval`` after the last answer, and each refused
    probe doubles the interval up to ``max_probe_interval``. However the intervals fall, no
    more than ``max_refused_probes_per_hour`` refusals are provoked in any hour: the trade is
    at most that many 429s an hour for noticing the quota's return within one interval.

    Attributes:
        probe_interval: Seconds before the first probe; ``None``: the pacing interval
            ``3600 / per_hour`` (1 s until the hourly quota is known). A ``Retry-After``
            longer than the interval wins.
        max_probe_interval: Seconds: the doubling stops here.
        max_refused_probes_per_hour: Refusals (429s) provoked in any hour, at most; a
            shared store counts those of every process together.
        margin: Seconds added to every moment a request is believed to leave the service's
            window, against clock drift between the client and the service.

    Example:
        >>> QuotaPolicy(max_refused_probes_per_hour=4).max_probe_interval
        300.0
    """

    probe_interval: float | None = None
    max_probe_interval: float = 300.0
    max_refused_probes_per_hour: int = 12
    margin: float = 0.5

    def __post_init__(self) -> None:
        _check_seconds("probe_interval", self.probe_interval, allow_none=True)
        _check_seconds("max_probe_interval", self.max_probe_interval)
        _check_seconds("margin", self.margin)
        cap: object = self.max_refused_probes_per_hour
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(
                f"QuotaPolicy.max_refused_probes_per_hour must be an int >= 1, not {cap!r}."
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """One request the store allowed to start; end it with ``refund`` or ``settle``.

    Attributes:
        probe: The request goes alone to learn whether the quota is back; its answer decides
            what every waiting caller does next.
        token: The store's own bookkeeping for this reservation (opaque to the caller).
    """

    probe: bool = False
    token: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NotNow:
    """The store's answer when no request may start now.

    Attributes:
        retry_in: Seconds after which a slot may be free: ``None`` when only an answer still
            in flight (a probe's, typically) can tell, so the caller waits for the next
            ``settle`` or ``refund``; ``math.inf`` when nothing known will bring one back (a
            quota of 0).
        reason: Why, in words, for log records (never the secret).
    """

    retry_in: float | None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaAnswer:
    """What an answer of the service said about the quota.

    Attributes:
        status_code: The answer's status; 429 is a refusal for quota.
        rate_limit: Its ``X-Rate-Limit-*`` headers, or ``None`` when it carried none.
        retry_after: Its ``Retry-After`` in seconds, when present and valid.
    """

    status_code: int
    rate_limit: RateLimit | None = None
    retry_after: float | None = None

    @property
    def refused(self) -> bool:
        """Whether the service refused the request for quota (status 429)."""
        return self.status_code == 429


@runtime_checkable
class HookQuota(Protocol):
    """The quota of one hook in a store: reserve a request, then refund or settle it.

    See the module's docstring for the full contract.
    """

    async def reserve(self) -> Reservation | NotNow:
        """Take one request's slot now if the quota allows it, else say when to ask again.

        Decides and books atomically; never waits for the quota to come back.
        """
        ...

    async def refund(self, reservation: Reservation) -> None:
        """Give back a reservation whose request never reached the network."""
        ...

    async def settle(self, reservation: Reservation, answer: QuotaAnswer | None) -> None:
        """End a reservation whose request may have reached the service.

        Args:
            reservation: What :meth:`reserve` returned.
            answer: The service's answer, or ``None`` when none came (the request then
                counts as used until an answer of the service says otherwise).
        """
        ...

    async def budget(self) -> float:
        """How many requests may start now by the store's knowledge (``inf``: no limit known).

        For diagnostics and tests; callers reserve with :meth:`reserve`, never from this.
        """
        ...


@runtime_checkable
class QuotaStore(Protocol):
    """Where hooks' quotas are kept; pass one to the client as ``quota=``.

    The client calls :meth:`hook` once per hook and event loop, from inside the running loop,
    and keeps what it returns for as long as it uses the hook.
    """

    def hook(self, key: HookKey) -> HookQuota:
        """The quota of the hook ``key`` (the same state for every caller that asks for it)."""
        ...
