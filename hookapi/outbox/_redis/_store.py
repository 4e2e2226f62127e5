""":class:`RedisStore`: one hook's outbox queue in Redis, shared by a fleet of processes.

Any process adds a message (one script, acknowledged once Redis has applied it); one process
at a time delivers the queue, under a lease it renews. Every write of the deliverer carries
the lease's fencing token, and a script checks it, so that a deliverer whose lease ended (a
pause, a partition) cannot record over the process that took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Final

from ..._exceptions import InvalidInputError
from ..._quota import HookKey
from ..._redis import check_prefix, redis_target, running_trio
from .._stores import (
    LeaseLostError,
    StoredMessage,
    StoredState,
    StoreError,
    StoreUnavailableError,
)
from ._scripts import KEY_NAMES, SCRIPTS

if TYPE_CHECKING:
    import redis.asyncio
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisStore"]

#: Messages one claim reads at most; a longer queue is read in several.
CLAIM_BATCH: Final = 1000
#: Seconds a put's token is kept, so that the put sent again after a broken connection is
#: stored once.
PUT_TOKEN_SECONDS: Final = 60
_ASYNCIO_ONLY = (
    "RedisStore runs on asyncio only: redis-py's client is asyncio-only. On trio, use a "
    "SQLiteStore (one per process), or run this program on asyncio."
)


def _seconds(name: str, value: object, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number of seconds.")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise InvalidInputError(f"{name} must be a finite number > 0, not {value!r}.")
    return float(value)


def outbox_keys(prefix: str, hook: HookKey) -> list[str]:
    """The Redis key names of ``hook``'s outbox: its id in a hash tag, its base URL as a digest.

    The client refuses a hook id with the shape of a secret, so no key name can hold one.
    """
    digest = hashlib.sha256(hook.base_url.rstrip("/").encode()).hexdigest()[:16]
    base = f"{prefix}{{{hook.hook_id}}}:{digest}:outbox:"
    return [base + name for name in KEY_NAMES]


def _record(text: str, expires_at: float | None) -> str:
    return json.dumps({"t": text, "e": expires_at}, separators=(",", ":"))


def _row(id: bytes, record: bytes, state: bytes, reason: bytes | None = None) -> StoredMessage:
    data = json.loads(record)
    expires = data.get("e")
    return StoredMessage(
        id=int(id),
        text=str(data["t"]),
        state=StoredState(state.decode()),
        expires_at=None if expires is None else float(expires),
        reason=None if reason is None else reason.decode(),
    )


class RedisStore:
    """Keeps one hook's outbox queue in Redis, shared by every process that puts into it.

    Give each process an ``Outbox(client, store=RedisStore(url))`` for the same hook: any of
    them may ``put`` (the message is in Redis when ``put`` returns, and takes its place in
    the order Redis accepted it); one at a time delivers the queue, under a lease it renews
    every third of ``lease``. If it dies, another takes over when the lease ends; if it loses
    Redis, it stops delivering until Redis is back. ``concurrency`` holds for the fleet, and
    dead letters are shared: ``failed()``, ``retry`` and ``discard`` work from any process.

    Keys are ``{prefix}{{hook_id}}:{digest of the base URL}:outbox:...`` (one hash tag per
    hook, for Redis Cluster); the secret is never stored. Queued messages and dead letters
    never expire; the lease does, and the outcomes kept for the processes that put the
    messages expire ``outcome_ttl`` seconds after their last write.

    Args:
        url_or_client: A Redis URL (``redis://host:6379/0``, ``rediss://``, ``unix://``), or a
            ``redis.asyncio.Redis`` client (which stays its owner's: it is never closed here).
        prefix: Put before every key, to share one Redis with other data.
        lease: Seconds the deliverer's lease lasts unless renewed: how long the queue waits
            after its deliverer dies. Renewed every third of it.
        poll_interval: Seconds between two looks for new messages (the deliverer) and for
            outcomes and dead letters (every process).
        timeout: Seconds a Redis call may take before Redis counts as unavailable.
        wait_replicas: With a replicated Redis, ``put`` waits (``WAIT``) until this many
            replicas have the message, and raises :class:`StoreUnavailableError` if fewer
            confirm within ``timeout`` (the primary has it: it may still be delivered).
        outcome_ttl: Seconds the outcome of a message is kept for the process that put it.

    Raises:
        ImportError: redis-py is not installed (the ``redis`` extra).
        InvalidInputError: A bad option, or a running trio loop (redis-py is asyncio-only).

    Example:
        >>> import hookapi
        >>> hookapi.RedisStore("redis://localhost:6379/0")
        <RedisStore redis://localhost:6379 prefix='hookapi:'>
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis,
        *,
        prefix: str = "hookapi:",
        lease: float = 10.0,
        poll_interval: float = 0.05,
        timeout: float = 0.5,
        wait_replicas: int = 0,
        outcome_ttl: float = 3600.0,
        _time_scale: float = 1.0,
    ) -> None:
        target = redis_target("RedisStore", url_or_client)
        if running_trio():
            raise InvalidInputError(_ASYNCIO_ONLY)
        self._where = target.where
        self._url: str | None = target.url
        self._given: Redis | None = target.client
        self._prefix = check_prefix(prefix)
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int):
            raise InvalidInputError("wait_replicas must be an int.")
        if wait_replicas < 0:
            raise InvalidInputError(f"wait_replicas must be at least 0, not {wait_replicas}.")
        self._lease = _seconds("lease", lease)
        self._poll = _seconds("poll_interval", poll_interval)
        self._timeout = _seconds("timeout", timeout)
        self._outcome_ttl = _seconds("outcome_ttl", outcome_ttl)
        self._wait_replicas = wait_replicas
        self._scale = _seconds("_time_scale", _time_scale)
        if self._poll >= self._lease / 3:
            raise InvalidInputError("poll_interval must be shorter than a third of the lease.")
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._keys: list[str] = []
        self._token: bytes | None = None  # the fencing token while this process holds the lease
        self._who = f"{os.getpid()}@{socket.gethostname()}"

    def __repr__(self) -> str:
        return f"<RedisStore {self._where} prefix={self._prefix!r}>"

    @property
    def lease(self) -> float:
        """Seconds the deliverer's lease lasts unless renewed."""
        return self._lease

    @property
    def poll_interval(self) -> float:
        """Seconds between two looks for new messages, outcomes and dead letters."""
        return self._poll

    @property
    def keys(self) -> list[str]:
        """The Redis keys of the hook's outbox, once open (see ``docs/outbox.md``)."""
        return list(self._keys)

    @property
    def holds_lease(self) -> bool:
        """Whether this process held the lease at its last look at Redis."""
        return self._token is not None

    # -- connection ---------------------------------------------------------------------------

    def _ms(self, seconds: float) -> int:
        """Loop seconds as real milliseconds, as Redis counts them."""
        return max(1, math.ceil(seconds / self._scale * 1000))

    async def _call(self, name: str, args: list[Any], *, keys: list[str] | None = None) -> Any:
        import redis.exceptions  # noqa: PLC0415

        if self._client is None:
            raise RuntimeError("The RedisStore is not open.")
        script = self._scripts.get(name)
        if script is None:
            # Loaded once by SHA; redis-py loads it again when Redis answers NOSCRIPT.
            script = self._scripts[name] = self._client.register_script(SCRIPTS[name])
        try:
            try:
                return await self._run(script, keys or self._keys, args)
            except redis.exceptions.ConnectionError:
                # A pooled connection Redis closed (a restart) fails its first command unsent:
                # once more on a new one. A script applied twice does nothing the second time
                # (a put finds its token; a fenced write finds the message ended).
                return await self._run(script, keys or self._keys, args)
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            TimeoutError,
        ) as exc:
            raise self._unavailable(exc) from None
        except redis.exceptions.BusyLoadingError as exc:
            raise self._unavailable(exc) from None
        except redis.exceptions.RedisError as exc:
            raise StoreError(
                f"Redis at {self._where} refused the outbox's {name} ({type(exc).__name__}: "
                f"{exc}).",
                path=self._where,
            ) from None

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        if self._given is None:
            return await script(keys=keys, args=args)
        # A client given: its own timeouts may be none, so bound the call here.
        async with asyncio.timeout(self._timeout * self._scale):
            return await script(keys=keys, args=args)

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"Redis at {self._where} is unavailable ({type(exc).__name__}): the outbox's "
            "queue cannot be read or written until it is back.",
            path=self._where,
        )

    async def open(self) -> list[StoredMessage]:
        """Refused: an :class:`~hookapi.Outbox` opens a RedisStore bound to its client's hook."""
        raise StoreError(
            "A RedisStore is opened by an Outbox, which binds it to its client's hook.",
            path=self._where,
        )

    async def open_shared(self, hook: HookKey) -> list[StoredMessage]:
        """Connect, bound to ``hook``; return the dead letters, oldest first.

        Raises:
            InvalidInputError: The running loop is trio's (redis-py is asyncio-only).
            StoreUnavailableError: Redis cannot be reached.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidInputError(_ASYNCIO_ONLY) from None
        if self._client is not None:
            raise RuntimeError("This RedisStore is already open.")
        if self._given is not None:
            self._client = self._given
        else:
            import redis.asyncio  # noqa: PLC0415
            from redis.asyncio.retry import Retry  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415

            assert self._url is not None
            # redis-py times its sockets on the loop's clock: the store's bound, no retry (a
            # put is sent again by `add` itself, with its token, so that it is stored once).
            bound = self._timeout * self._scale
            self._client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=bound,
                socket_connect_timeout=bound,
                retry=Retry(NoBackoff(), 0),
            )
        self._keys = outbox_keys(self._prefix, hook)
        self._scripts = {}
        try:
            _, _, letters = await self.sync([], b"")
        except BaseException:
            await self.aclose()
            raise
        return letters or []

    async def aclose(self) -> None:
        """Close the client it made (a client given stays open); the queue stays in Redis."""
        client, self._client = self._client, None
        self._token = None
        if client is not None and self._given is None:
            await client.aclose()

    # -- any process --------------------------------------------------------------------------

    async def add(self, text: str, *, expires_at: float | None) -> int:
        """Add a message at the end of the queue; return its id once Redis has it.

        A call that fails on a broken connection is sent once more with the same token, so
        that the message is stored once; one that still fails raises.

        Raises:
            StoreUnavailableError: Redis did not take it (or, with ``wait_replicas``, fewer
                replicas confirmed it than asked).
        """
        token = uuid.uuid4().hex
        keys = [*self._keys, f"{self._keys[0][: -len('seq')]}put:{token}"]
        args = [_record(text, expires_at), PUT_TOKEN_SECONDS]
        call = self._add if not self._wait_replicas else self._add_and_wait
        try:
            return await call(keys, args)
        except StoreUnavailableError:
            return await call(keys, args)

    async def _add(self, keys: list[str], args: list[Any]) -> int:
        return int(await self._call("add", args, keys=keys))

    async def _add_and_wait(self, keys: list[str], args: list[Any]) -> int:
        """Add, then ``WAIT`` on the same connection (WAIT counts that connection's writes)."""
        import redis.exceptions  # noqa: PLC0415

        assert self._client is not None
        script = self._scripts.get("add")
        if script is None:
            script = self._scripts["add"] = self._client.register_script(SCRIPTS["add"])
        try:
            async with asyncio.timeout(self._timeout * 2 * self._scale):
                async with self._client.pipeline(transaction=False) as pipe:
                    await script(keys=keys, args=args, client=pipe)
                    # Half the timeout: the answer must come within the socket's own bound.
                    pipe.execute_command("WAIT", self._wait_replicas, self._ms(self._timeout / 2))
                    id, confirmed = await pipe.execute()
        except (redis.exceptions.RedisError, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        if int(confirmed) < self._wait_replicas:
            raise StoreUnavailableError(
                f"Redis at {self._where} has the message (id {int(id)}), but only "
                f"{int(confirmed)} of {self._wait_replicas} replica(s) confirmed it in time: a "
                "failover now could lose it, or it may still be delivered.",
                path=self._where,
            )
        return int(id)

    async def sync(
        self, ids: list[int], version: bytes
    ) -> tuple[bytes, dict[int, str], list[StoredMessage] | None]:
        """The outcomes of ``ids`` known so far, and the dead letters if ``version`` is old."""
        reply = await self._call("sync", [version, *ids])
        outcomes = {
            id: found.decode() for id, found in zip(ids, reply[1], strict=True) if found is not None
        }
        if len(reply) < 3:
            return reply[0], outcomes, None
        flat = reply[2]
        letters = [
            _row(flat[i], flat[i + 1], flat[i + 2], flat[i + 3])
            for i in range(0, len(flat), 4)
            if flat[i + 1] is not None
        ]
        return reply[0], outcomes, letters

    async def discard(self, id: int) -> bool:
        """Forget a dead letter; ``False`` if there is none with that id."""
        return int(await self._call("discard", [id])) == 1

    async def retry(self, id: int, *, expires_at: float | None) -> tuple[int, str] | None:
        """Queue a dead letter again, at once: its new id and text, or ``None`` if none."""
        reply = await self._call("retry", [id, "" if expires_at is None else repr(expires_at)])
        if not isinstance(reply, list):
            return None
        return int(reply[0]), reply[1].decode()

    # -- the deliverer ------------------------------------------------------------------------

    async def acquire(self) -> float | None:
        """Take the lease: ``None`` once taken, else loop seconds until it may be free."""
        last = self._token or b""
        nonce = uuid.uuid4().hex[:16]
        reply = await self._call("acquire", [self._ms(self._lease), self._who, last, nonce])
        if int(reply[0]) == 1:
            self._token = reply[1] if isinstance(reply[1], bytes) else str(reply[1]).encode()
            return None
        self._token = None
        left = int(reply[1])
        # -1: a lease without expiry (written by hand): look again at the usual pace.
        return self._lease / 3 if left < 0 else left / 1000 * self._scale

    async def renew(self) -> bool:
        """Extend the lease; ``False`` if it was lost or Redis did not answer."""
        token = self._token
        if token is None:
            return False
        try:
            held = int(await self._call("renew", [token, self._ms(self._lease)])) == 1
        except StoreError:
            # Unknown: kept, so that `acquire` takes it back if Redis returns within the lease.
            return False
        if not held:
            self._token = None
        return held

    async def release(self) -> None:
        """Give up the lease if still held, so that another process takes over at once."""
        token = self._token
        if token is not None:
            with contextlib.suppress(StoreError):  # else it ends when its time is up
                await self._call("release", [token])
                self._token = None

    def _fenced(self) -> bytes:
        if self._token is None:
            raise LeaseLostError("This process does not hold the outbox's lease.", path=self._where)
        return self._token

    def _check(self, reply: Any) -> int:
        value = int(reply)
        if value == -1:
            self._token = None
            raise LeaseLostError(
                "This process's lease on the outbox ended; another process delivers it now.",
                path=self._where,
            )
        return value

    async def claim(self, after: int) -> list[StoredMessage]:
        """The queued messages with an id above ``after``, oldest first.

        Raises:
            LeaseLostError: This process does not hold the lease.
        """
        token = self._fenced()
        rows: list[StoredMessage] = []
        while True:
            reply = await self._call("claim", [token, after, CLAIM_BATCH])
            if not isinstance(reply, list):
                self._check(reply)
            batch = [_row(reply[i], reply[i + 1], reply[i + 2]) for i in range(0, len(reply), 3)]
            rows += batch
            if len(batch) < CLAIM_BATCH:
                return rows
            after = batch[-1].id

    async def update(self, id: int, state: StoredState, *, reason: str | None = None) -> None:
        """Record a message's new state, as the lease holder.

        Raises:
            LeaseLostError: This process does not hold the lease.
        """
        token = self._fenced()
        if state is StoredState.QUEUED or state is StoredState.SENDING:
            self._check(await self._call("mark", [token, id, state.value]))
            return
        self._check(
            await self._call(
                "settle",
                [
                    token,
                    id,
                    state.value,
                    reason or "",
                    f"{state.value}|{reason or ''}",
                    self._ttl(),
                ],
            )
        )

    async def finish(self, id: int, outcome: str) -> None:
        """Remove a delivered or dropped message; keep ``outcome`` for the process that put it.

        Raises:
            LeaseLostError: This process does not hold the lease.
        """
        kind = outcome.split("|", 1)[0]
        token = self._fenced()
        self._check(await self._call("settle", [token, id, kind, "", outcome, self._ttl()]))

    async def remove(self, id: int) -> None:
        """Remove a delivered message (the plain store protocol's way)."""
        await self.finish(id, "delivered|200|1|0")

    def _ttl(self) -> str:
        return repr(self._outcome_ttl / self._scale)
