""":class:`RedisQuota`: one hook's quota shared by every process and machine through Redis.

Each decision is one Lua script run atomically by Redis on the time Redis reads from its own
clock, so processes on machines with skewed clocks agree. A post costs one round trip: the
refunds and settles of a process ride with its next reservation (or go on their own when none
follows within ``END_DELAY``). A process
asks Redis only for the caller at the head of its own queue (the client's), and Redis serves
the waiting processes in rounds, so that none starves. When Redis is down or slow, the store
paces from a process-local view (``on_unavailable="local"``) or refuses to send (``"raise"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio

from .._exceptions import InvalidInputError, QuotaUnavailableError
from .._quota import (
    HookKey,
    HookQuota,
    MemoryQuota,
    NotNow,
    QuotaAnswer,
    QuotaPolicy,
    RateLimit,
    Reservation,
)
from ._scripts import BUDGET, END, KEY_NAMES, RESERVE
from ._target import check_prefix, redis_target, running_trio

if TYPE_CHECKING:
    import redis.asyncio
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisQuota", "hook_keys"]

logger = logging.getLogger("hookapi")

#: Real seconds a Redis call may take before Redis counts as unavailable.
REDIS_TIMEOUT: Final = 0.5
#: Real seconds between attempts to reach Redis again while pacing locally.
RECONNECT_INTERVAL: Final = 1.0
#: Real seconds between two questions of a process waiting behind others in the fleet's queue.
POLL_INTERVAL: Final = 0.005
#: Real seconds a waiting process keeps its place in the queue past the time it was told.
QUEUE_GRACE: Final = 0.25
#: Real seconds a refund or settle waits for the process's next reservation to carry it to
#: Redis before it goes on its own: long enough for a busy process's next post, short enough
#: that the fleet sees a slot come back at once.
END_DELAY: Final = 0.002
_ASYNCIO_ONLY = (
    "RedisQuota runs on asyncio only: redis-py's client is asyncio-only. On trio, use the "
    "default in-memory quota, or run this program on asyncio."
)


def _check_on_unavailable(value: object) -> Literal["local", "raise"]:
    if value == "local":
        return "local"
    if value == "raise":
        return "raise"
    raise InvalidInputError(f"on_unavailable must be 'local' or 'raise', not {value!r}.")


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number of seconds.")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, not {value!r}.")
    return float(value)


def hook_keys(prefix: str, key: HookKey) -> list[str]:
    """The Redis key names of hook ``key``: its id in a hash tag, its base URL as a digest.

    The client refuses a hook id with the shape of a secret, so no key name can hold one.
    """
    digest = hashlib.sha256(key.base_url.rstrip("/").encode()).hexdigest()[:16]
    base = f"{prefix}{{{key.hook_id}}}:{digest}:"
    return [base + name for name in KEY_NAMES]


def _in_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _number(value: float | None) -> str:
    """A number as a script argument; ``""`` for none (Lua's ``tonumber`` makes it nil)."""
    return "" if value is None else repr(float(value))


def _arg(value: float | str) -> bytes:
    """A script argument that never changes, encoded once."""
    return (value if isinstance(value, str) else repr(float(value))).encode()


class RedisQuota:
    """A quota store in Redis: every process posting through one hook shares one quota.

    Pass it as ``quota=`` to the client of every process (and every machine) that posts
    through the hook. Reservations, refunds and each answer's ``Remaining`` are applied
    atomically in Redis; a 429 blocks the whole fleet, which sends one probe afterwards; the
    processes waiting for the quota are served in rounds; the cap on refusals an hour of the
    policy holds for the whole fleet, not per process. Keys are
    ``{prefix}{{hook_id}}:{digest of the base URL}:...`` (one hash tag per hook, for Redis
    Cluster) and expire a day and an hour after the fleet's last use, refreshed about once a
    minute (the refusals of the last hour, an hour after the last one); the secret is never
    stored, and never logged. A post costs one round trip: its settle rides with the
    process's next reservation.

    Args:
        url_or_client: A Redis URL (``redis://host:6379/0``, ``rediss://``, ``unix://``), or a
            ``redis.asyncio.Redis`` client (which stays its owner's: :meth:`aclose` does not
            close it).
        prefix: Put before every key, to share one Redis with other data.
        on_unavailable: When Redis cannot be reached or is slow: ``"local"`` paces from this
            process's own view (one WARNING when that starts and one when Redis is back);
            ``"raise"`` raises :class:`~hookapi.QuotaUnavailableError` without sending.
        lease: Seconds a reservation holds its slot without being settled: after that it
            counts as sent, so the slots of a process that died mid-request come back to
            the others. Longer than any request may take.
        policy: How a 429 is followed by probes (default: ``QuotaPolicy()``). Its
            ``max_refused_probes_per_hour`` counts the 429s of every process together.

    Raises:
        ImportError: redis-py is not installed (the ``redis`` extra).
        InvalidInputError: A bad option, or a running trio loop (redis-py is asyncio-only).

    Example:
        >>> import hookapi
        >>> quota = hookapi.RedisQuota("redis://localhost:6379/0")
        >>> quota
        <RedisQuota redis://localhost:6379 prefix='hookapi:' on_unavailable='local'>
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis,
        *,
        prefix: str = "hookapi:",
        on_unavailable: Literal["local", "raise"] = "local",
        lease: float = 120.0,
        policy: QuotaPolicy | None = None,
        _time_scale: float = 1.0,
    ) -> None:
        target = redis_target("RedisQuota", url_or_client)
        if _in_asyncio() is False and running_trio():
            raise InvalidInputError(_ASYNCIO_ONLY)
        self._where = target.where
        self._url: str | None = target.url
        self._given: Redis | None = target.client
        self._prefix = check_prefix(prefix)
        if policy is not None and not isinstance(policy, QuotaPolicy):
            raise InvalidInputError(f"policy must be a QuotaPolicy, not {type(policy).__name__}.")
        self._on_unavailable = _check_on_unavailable(on_unavailable)
        self._scale = _check_seconds("_time_scale", _time_scale)
        self._lease = _check_seconds("lease", lease)
        self._policy = policy or QuotaPolicy()
        probe = self._policy.probe_interval
        # Arguments of every call, encoded once (redis-py passes bytes on as they are).
        self._common: list[bytes] = [
            _arg(self._scale),
            _arg(self._policy.margin),
            b"" if probe is None else _arg(probe),
            _arg(self._policy.max_probe_interval),
            _arg(self._policy.max_refused_probes_per_hour),
        ]
        # The in-memory store it paces from while Redis is unavailable (its own, not the
        # process's default: its state shadows only what went through this store).
        self._memory = MemoryQuota(policy=self._policy)
        # redis-py's connections belong to the event loop that opened them: one client (and
        # one set of hooks) per loop.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PerLoop] = (
            weakref.WeakKeyDictionary()
        )
        self._down = False
        self._retry_at = -math.inf
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<RedisQuota {self._where} prefix={self._prefix!r} "
            f"on_unavailable={self._on_unavailable!r}>"
        )

    @property
    def available(self) -> bool:
        """Whether the last call to Redis succeeded.

        ``False`` while it paces locally, or, with ``on_unavailable="raise"``, refuses to send.
        """
        return not self._down

    def hook(self, key: HookKey) -> HookQuota:
        """The shared quota of the hook ``key``; called by the client inside its event loop.

        Raises:
            InvalidInputError: The running loop is not asyncio's (trio).
        """
        here = self._here()
        found = here.hooks.get(key)
        if found is None:
            found = here.hooks[key] = _RedisHook(self, key, self._memory.hook(key))
        return found

    def _here(self) -> _PerLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidInputError(_ASYNCIO_ONLY) from None
        here = self._loops.get(loop)
        if here is None:
            if self._given is not None:
                client = self._given
            else:
                import redis.asyncio  # noqa: PLC0415
                from redis.asyncio.retry import Retry  # noqa: PLC0415
                from redis.backoff import NoBackoff  # noqa: PLC0415

                assert self._url is not None
                # redis-py times its sockets on the loop's clock: the same bound as ours, with
                # no retry (its backoff would outlast it), so no timer of ours is needed.
                bound = REDIS_TIMEOUT * self._scale
                client = redis.asyncio.Redis.from_url(
                    self._url,
                    socket_timeout=bound,
                    socket_connect_timeout=bound,
                    retry=Retry(NoBackoff(), 0),
                )
            here = self._loops[loop] = _PerLoop(client, bounded=self._given is None)
        return here

    async def _call(self, name: str, text: str, keys: list[bytes], args: list[bytes | str]) -> Any:
        """Run one script, bounded by the Redis timeout; raise ``_Unavailable`` on failure."""
        import redis.exceptions  # noqa: PLC0415

        here = self._here()
        script = here.scripts.get(name)
        if script is None:
            # Loaded once by SHA; redis-py loads it again when Redis answers NOSCRIPT.
            script = here.scripts[name] = here.client.register_script(text)
        try:
            if here.bounded:
                reply = await script(keys=keys, args=[*self._common, *args])
            else:
                # A client passed in keeps its owner's timeouts and retries: bound it here.
                with anyio.fail_after(REDIS_TIMEOUT * self._scale):
                    reply = await script(keys=keys, args=[*self._common, *args])
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            # Drop every pooled connection: after a restart, an idle one would fail once more.
            with anyio.move_on_after(REDIS_TIMEOUT * self._scale), contextlib.suppress(Exception):
                await here.client.connection_pool.disconnect()
            self._failed(_refusal(exc) or exc)
            raise _Unavailable from None
        if self._down:
            self._down = False
            logger.warning(
                "hookapi: Redis at %s is back: the quota is shared again.",
                self._where,
                extra={"hookapi_event": "quota_shared"},
            )
        return reply

    def _failed(self, exc: BaseException) -> None:
        now = anyio.current_time()
        self._retry_at = now + RECONNECT_INTERVAL * self._scale
        why = type(exc).__name__
        if _is_refusal(exc):
            why = f"it refused this client's credentials: {why}; check the password or ACL user"
        was_down, self._down = self._down, True
        if self._on_unavailable == "raise":
            raise QuotaUnavailableError(
                f"The shared quota in Redis at {self._where} is unavailable "
                f"({why}), and RedisQuota(on_unavailable='raise') does not send without it."
            ) from None
        if not was_down:
            logger.warning(
                "hookapi: Redis at %s is unavailable (%s): pacing from this process's own "
                "view of the quota until it is back.",
                self._where,
                why,
                extra={"hookapi_event": "quota_local"},
            )

    def _use_local(self) -> bool:
        return (
            self._down and self._on_unavailable == "local" and anyio.current_time() < self._retry_at
        )

    async def aclose(self) -> None:
        """Finish the updates still on their way to Redis, and close the client it made.

        A client passed in stays open (it is its owner's). Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - only reachable outside any loop
            return
        here = self._loops.get(loop)
        if here is None:
            return
        for hook in here.hooks.values():
            await hook.flush()  # on this loop's client: forgotten only after
        del self._loops[loop]
        if self._given is None:
            await here.client.aclose()

    async def __aenter__(self) -> RedisQuota:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _is_refusal(exc: BaseException) -> bool:
    """Whether Redis refused the client's credentials (a wrong password, an unknown user)."""
    import redis.exceptions  # noqa: PLC0415

    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(
        ("NOAUTH", "WRONGPASS", "NOPERM")
    )


def _refusal(exc: BaseException) -> BaseException | None:
    """The credentials refusal behind ``exc``, if any.

    redis-py retries a refused connection with backoff, so the Redis timeout often ends the
    call first: the refusal is then the context of the cancellation the timeout raised.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not loop forever
        if seen is None:
            return None
        if _is_refusal(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _PerLoop:
    """What a store keeps per event loop: its Redis client, loaded scripts and hooks."""

    __slots__ = ("bounded", "client", "hooks", "scripts")

    def __init__(self, client: Redis, *, bounded: bool) -> None:
        self.client = client
        # Whether the client's own socket timeouts bound every call (the client it made).
        self.bounded = bounded
        self.scripts: dict[str, AsyncScript] = {}
        self.hooks: dict[HookKey, _RedisHook] = {}


class _Unavailable(Exception):
    """Redis could not answer; the caller falls back to the local view."""


class _Shared:
    """A reservation booked in Redis."""

    __slots__ = ("before", "name", "seq", "started")

    def __init__(self, name: str, seq: str, before: str, started: str) -> None:
        self.name = name
        self.seq = seq
        self.before = before
        self.started = started


class _Local:
    """A reservation booked only in the local view, while Redis was unavailable."""

    __slots__ = ("inner",)

    def __init__(self, inner: Reservation) -> None:
        self.inner = inner


class _RedisHook:
    """One hook's quota in Redis, for one process; it implements ``HookQuota``."""

    def __init__(self, store: RedisQuota, key: HookKey, local: HookQuota) -> None:
        self._store = store
        self.keys = hook_keys(store._prefix, key)
        self._keys = [name.encode() for name in self.keys]  # encoded once, for every call
        # This process's place in the fleet's queue (only its head caller ever asks).
        self._waiter = uuid.uuid4().hex
        # Reservation names: unique in the fleet from this random prefix and a counter.
        self._tag = self._waiter[:16] + "."
        self._names = itertools.count()
        # The local view it paces from while Redis is unavailable. Kept lazily: while Redis
        # answers, only the last answer and the count of shared reservations in flight; the
        # view learns them when Redis first fails (it is then "primed"), and each shared
        # reservation still in flight then holds a slot of it until it ends.
        self._local = local
        self._primed = False
        self._last: QuotaAnswer | None = None
        self._flying = 0
        self._stand_ins: list[Reservation] = []
        self._scale = store._scale
        scale = store._scale
        # What every reservation of this process passes: waiter, lease, poll, queue grace.
        self._constant = [
            _arg(self._waiter),
            _arg(store._lease),
            _arg(POLL_INTERVAL * scale),
            _arg(QUEUE_GRACE * scale),
        ]
        # Refunds and settles on their way to Redis, in order: the caller never waits for them
        # (a shielded wait could outlast its deadline); the next reservation carries them, or
        # the timer sends them on their own once the oldest has waited END_DELAY.
        self._ends: list[_End] = []
        self._oldest = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<RedisQuota hook keys={self.keys[0][:-5]!r}>"

    async def reserve(self) -> Reservation | NotNow:
        """Take a slot in Redis, or say when to ask again; the local view when Redis is down."""
        store = self._store
        if store._use_local():
            return await self._reserve_locally()
        # Used by Redis only if it lost the hook (a restart): then this process's view is
        # a better start than nothing.
        seed = holds = ""
        # Once Redis has failed, this process's view is worth more than nothing if Redis lost
        # the hook meanwhile; until then, Redis has kept it (or it has expired for good).
        local_budget = await self._local.budget() if self._primed else math.inf
        if math.isfinite(local_budget):
            seed = repr(float(local_budget))
            if local_budget < 1:
                # Not a booking: with no budget the local view only says when to ask again.
                ahead = await self._local.reserve()
                if isinstance(ahead, NotNow):
                    holds = _number(ahead.retry_in)
                else:  # a probe the local view would send: not now, it is Redis's turn
                    await self._local.refund(ahead)
        scale = self._scale
        name = self._tag + str(next(self._names))
        ends = self._ends
        self._ends = []
        args: list[bytes | str] = [*self._constant, seed, holds, name, *ends]
        try:
            reply = await store._call("reserve", RESERVE, self._keys, args)
        except _Unavailable:
            return await self._reserve_locally()
        except asyncio.CancelledError:
            # Cancelled after Redis may have booked it and ended the others: it goes back (a
            # no-op if it was never booked), and the others go again, each applied only if
            # it is still in flight (so never twice).
            self._end_later(f"refund|{name}|0|0")
            for end in ends:
                self._end_later(_guarded(end))
            raise
        if int(reply[0]) == 1:
            self._primed = False
            self._flying += 1
            token = _Shared(name, reply[1].decode(), reply[2].decode(), reply[4].decode())
            return Reservation(probe=reply[3] == b"1", token=token)
        wait = reply[1].decode()
        reason = reply[2].decode()
        if wait == "-1":
            return NotNow(retry_in=math.inf, reason=reason)
        if wait == "":
            return NotNow(retry_in=POLL_INTERVAL * scale, reason=reason)
        return NotNow(retry_in=float(wait), reason=reason)

    async def _prime(self) -> None:
        """Bring the local view up to what this process learnt through Redis, once per outage."""
        if self._primed:
            return
        self._primed = True
        if self._last is not None:
            # The last answer, as if to a request of its own: an over-count by one at most.
            learn = await self._local.reserve()
            if isinstance(learn, Reservation):
                await self._local.settle(learn, self._last)
        while len(self._stand_ins) < self._flying:
            held = await self._local.reserve()
            if not isinstance(held, Reservation):
                break  # the local view has no room now: it counts them no more than it can
            self._stand_ins.append(held)

    async def _reserve_locally(self) -> Reservation | NotNow:
        await self._prime()
        answer = await self._local.reserve()
        if isinstance(answer, NotNow):
            if answer.retry_in is None or answer.retry_in > RECONNECT_INTERVAL * self._scale:
                # Ask again when Redis may be back, not only when the local view says so.
                return NotNow(retry_in=RECONNECT_INTERVAL * self._scale, reason=answer.reason)
            return answer
        return Reservation(probe=answer.probe, token=_Local(answer))

    async def refund(self, reservation: Reservation) -> None:
        """Give the slot back: the request never reached the network."""
        token = reservation.token
        if isinstance(token, _Local):
            await self._local.refund(token.inner)
            return
        assert isinstance(token, _Shared)
        self._flying -= 1
        if self._stand_ins:
            await self._local.refund(self._stand_ins.pop())
        self._end_later(f"refund|{token.name}|0|{token.started}")

    async def settle(self, reservation: Reservation, answer: QuotaAnswer | None) -> None:
        """Count the request, and learn from the service's answer when there is one."""
        token = reservation.token
        if isinstance(token, _Local):
            await self._local.settle(token.inner, answer)
            return
        assert isinstance(token, _Shared)
        self._flying -= 1
        if self._stand_ins:
            await self._local.settle(self._stand_ins.pop(), answer)
        if answer is None:
            self._end_later(f"lost|{token.name}|0|{token.started}")
            return
        if answer.rate_limit is not None or answer.refused:
            self._last = answer
        limit = answer.rate_limit or RateLimit()
        self._end_later(
            f"settle|{token.name}|0|{token.started}|{token.seq}|{token.before}|"
            f"{'1' if answer.refused else '0'}|{_number(answer.retry_after)}|"
            f"{_number(limit.per_hour)}|{_number(limit.per_day)}|{_number(limit.remaining)}"
        )

    def _end_later(self, end: _End) -> None:
        """Queue one end for the next reservation, and make sure it goes soon without one."""
        loop = asyncio.get_running_loop()
        if not self._ends:
            self._oldest = loop.time()
        self._ends.append(end)
        if self._timer is None:
            self._timer = loop.call_later(END_DELAY * self._scale, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._ends:
            return
        loop = asyncio.get_running_loop()
        left = self._oldest + END_DELAY * self._scale - loop.time()
        if left > 0:  # a reservation carried the older ones: these are young still
            self._timer = loop.call_later(left, self._due)
            return
        task = loop.create_task(self._send_ends())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_ends(self) -> None:
        """Send the queued ends on their own. Never raises (but a cancellation).

        The requests have been decided already, and an error here could make a caller send
        again a message that was posted. A lost end expires with its lease.
        """
        ends = self._ends
        if not ends:
            return
        self._ends = []
        try:
            await self._store._call("end", END, self._keys, list(ends))
        except (_Unavailable, QuotaUnavailableError):
            pass
        except asyncio.CancelledError:
            for end in ends:
                self._end_later(_guarded(end))
            raise

    async def flush(self) -> None:
        """Wait until every refund and settle of this process has reached Redis (or failed)."""
        while self._ends or self._pending:
            if self._ends:
                await self._send_ends()
            if self._pending:
                await asyncio.wait(set(self._pending))

    async def budget(self) -> float:
        """Requests that may start now, by Redis's count (the local view's while it is down)."""
        await self.flush()
        if self._store._use_local():
            await self._prime()
            return await self._local.budget()
        try:
            reply = await self._store._call("budget", BUDGET, self._keys, [])
        except (_Unavailable, QuotaUnavailableError):
            await self._prime()
            return await self._local.budget()
        return float(reply)


#: How one reservation ends, as the scripts read it (see ``_ends.lua``): kind, name, guarded,
#: when it was reserved, and for a settle what the service answered, joined by "|".
_End = str


def _guarded(end: _End) -> _End:
    """The same end, applied only if its reservation is still in flight (a second attempt)."""
    kind, name, _, rest = end.split("|", 3)
    return f"{kind}|{name}|1|{rest}"
