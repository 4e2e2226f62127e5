"""``HookHandler``: a :class:`logging.Handler` that posts records to a hook, in digests if need be.

``emit`` only formats the record and appends it to a bounded queue (the :class:`Feed`); a
daemon thread running an event loop of its own (the pump) delivers from there through an
outbox with digests on. The thread starts at the first record, so a handler configured
before ``os.fork()`` (gunicorn ``--preload``) starts its own in each child, as
:class:`~hookapi.HookClient` does.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import math
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal, Self

import anyio

from .._client import AsyncHookClient
from .._exceptions import InvalidInputError
from .._otel import _api_installed
from .._sync import _Forks
from .._validate import check_timeout
from ..outbox import Coalesce
from ..outbox._coalesce import DEFAULT_DIGEST_BYTES
from ._digest import Entry, entry_key
from ._pump import Feed, Pump

__all__ = ["NEVER_SENT", "HookHandler"]

logger = logging.getLogger("hookapi")

#: Loggers whose records are never sent: the hook's own client and its HTTP stack, which
#: would otherwise report the handler's failures through the handler.
NEVER_SENT = ("hookapi", "httpx", "httpcore")


def _never_sent(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in NEVER_SENT)


def _preload(backend: str) -> None:
    """Import now, in the caller's thread, what the handler's thread imports as it starts.

    The event loop's backend, whether OpenTelemetry is there (the client asks at its first
    post), and on trio the pool's path there (httpcore, its trio backend, h11). A process that
    forks while another thread is importing gives the child a module that never finishes
    initialising: the child's first record would start a thread that dies on it, and the
    child's records would be queued for nobody (seen: ``partially initialized module
    'httpcore'`` in a child forked right after the parent's first record, on trio).
    """
    try:
        importlib.import_module(f"anyio._backends._{backend}")
    except ImportError as error:
        raise InvalidInputError(f"backend={backend!r} needs {error.name} installed.") from None
    _api_installed()
    if backend == "trio":
        importlib.import_module("hookapi._http._core")
        importlib.import_module("httpcore._backends.trio")


def _key(record: logging.LogRecord) -> str:
    """What a digest groups a record by: its message before arguments were merged.

    structlog hands ``logging`` its event dictionary as the message: the event name, not the
    dictionary with its varying fields, is what records of one kind share.
    """
    message = record.msg
    if isinstance(message, Mapping) and "event" in message:
        message = message["event"]
    return entry_key(message)


def _collected(feed: Feed, forks: int, name: str) -> None:
    """Finalise a handler dropped unclosed: warn, and let its thread drain and end."""
    if forks != _Forks.count:
        return  # made in the parent: its thread is not in this process
    warnings.warn(f"unclosed {name}: close it", ResourceWarning, stacklevel=1)
    feed.stop()


class HookHandler(logging.Handler):
    """Posts log records to a hook's Desktop, under its quota, without ever holding up a caller.

    :meth:`emit` formats the record and queues it (at most ``capacity``; more are dropped,
    counted, and the count is said in the next message). A daemon thread with an event loop
    of its own posts them through an :class:`~hookapi.Outbox` with ``coalesce`` on: when more
    records wait than the quota can post soon, consecutive ones go as one digest ("... and 37
    more ERROR records in the last 5 minutes, 12 of them like: ..."). It works the same when
    logged to from plain code, from threads, or from inside a running event loop.

    Records of the ``hookapi``, ``httpx`` and ``httpcore`` loggers, and any record logged on
    the handler's own thread, are never sent: the handler cannot report on itself in a loop.

    Args:
        url_or_client: The hook URL, or an :class:`~hookapi.AsyncHookClient` that only this
            handler uses (it runs on the handler's loop; the handler does not close it).
            ``None`` (the default): the ``HOOKAPI_URL`` environment variable.
        level: The least level sent (``logging.ERROR`` by default).
        capacity: Records queued at most, in the handler and in its outbox each.
        digest_bytes: Request body bytes a message may have at most (a digest fills it).
        burst: Messages posted back to back before the handler paces itself.
        interval: Seconds between messages once the burst is spent; ``None``: the hook's
            pace, ``3600 / per_hour``.
        drain_timeout: Seconds :meth:`close` (and interpreter exit) spends delivering.
        backend: The handler thread's event loop: ``"asyncio"`` or ``"trio"``.
        backend_options: Options for that loop, as :func:`anyio.run` takes them (a virtual
            clock in tests, say).
        thread: ``False``: never start a thread; records wait in the queue (``capacity`` at
            most) for :meth:`delivering` to post them on the application's event loop.

    Raises:
        InvalidInputError: An option or the URL is invalid (nothing is started then).

    Example:
        >>> import logging
        >>> from hookapi.logging import HookHandler
        >>> def setup(url: str) -> None:
        ...     logging.getLogger().addHandler(HookHandler(url))
    """

    def __init__(
        self,
        url_or_client: str | AsyncHookClient | None = None,
        *,
        level: int | str = logging.ERROR,
        capacity: int = 1000,
        digest_bytes: int = DEFAULT_DIGEST_BYTES,
        burst: int = 3,
        interval: float | None = None,
        drain_timeout: float = 5.0,
        backend: Literal["asyncio", "trio"] = "asyncio",
        backend_options: Mapping[str, Any] | None = None,
        thread: bool = True,
    ) -> None:
        given: object = capacity
        if isinstance(given, bool) or not isinstance(given, int) or capacity < 1:
            raise InvalidInputError(f"capacity must be an int >= 1, not {capacity!r}.")
        self._coalesce = Coalesce(max_bytes=digest_bytes, burst=burst, interval=interval)
        self._drain_timeout = check_timeout("drain_timeout", drain_timeout)
        if backend not in ("asyncio", "trio"):
            raise InvalidInputError(f"backend must be 'asyncio' or 'trio', not {backend!r}.")
        self._backend = backend
        _preload(backend)
        self._backend_options = dict(backend_options or {})
        self._capacity = capacity
        if not isinstance(thread, bool):
            raise InvalidInputError(f"thread must be True or False, not {thread!r}.")
        self._own_thread = thread
        self._make: Callable[[], AsyncHookClient] | None
        if isinstance(url_or_client, AsyncHookClient):
            self._client: AsyncHookClient | None = url_or_client
            self._make = None
        elif url_or_client is None:
            self._make = AsyncHookClient.from_env
            self._client = self._make()  # raises here, in the caller's thread, if unset
        elif isinstance(url_or_client, str):
            self._make = functools.partial(AsyncHookClient.from_url, url_or_client)
            self._client = self._make()
        else:
            raise InvalidInputError(
                "url_or_client must be a hook URL or an AsyncHookClient, "
                f"not {type(url_or_client).__name__}."
            )
        # Last: from here logging knows the handler (logging.shutdown() closes it), so a
        # handler whose options were refused is never half made in its list.
        super().__init__(level)
        self._url = self._client.url
        self._start_lock = threading.Lock()
        # With thread=False the queue exists from the start: records wait for delivering().
        self._feed: Feed | None = None if thread else Feed(capacity)
        self._delivering = False
        #: The pump delivering now (on the thread or in ``delivering()``): what it holds.
        self._pump: Pump | None = None
        self._thread: threading.Thread | None = None
        self._finalizer: weakref.finalize[..., HookHandler] | None = None
        self._forks = _Forks.count
        self._closed = False

    def __repr__(self) -> str:
        return f"<HookHandler {logging.getLevelName(self.level)} {self._url}>"

    @property
    def dropped(self) -> int:
        """Records dropped (the queue was full, or formatting raised), not yet said in a message."""
        return 0 if self._feed is None else self._feed.dropped

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted record for the hook; never blocks and never raises."""
        try:
            if _never_sent(record.name):
                return
            feed = self._feed
            if feed is None or self._forks != _Forks.count:
                feed = self._start()
                if feed is None:
                    return
            if record.thread == feed.thread:
                return
            try:
                text = self.format(record)
            except Exception as error:
                # Dropped and counted like a record a full queue turns away; the next message
                # says so, and handleError() reports it the way logging always does.
                feed.unformatted(type(error).__name__)
                raise
            feed.offer(
                Entry(text=text, level=record.levelname, created=record.created, key=_key(record))
            )
        except Exception:
            self.handleError(record)

    def _start(self) -> Feed | None:
        """The queue to put records in; ``None`` once closed.

        It starts the thread first if need be (again, in a fork's child).
        """
        with self._start_lock:
            self._follow_fork()
            if self._feed is not None:
                return self._feed
            if self._closed or self._client is None or not self._own_thread:
                return None  # closed, or a client of the parent's that cannot follow a fork
            feed = Feed(self._capacity)
            pump = self._new_pump(feed, self._client, own_thread=True)
            thread = threading.Thread(
                target=_run,
                args=(pump, self._backend, self._backend_options),
                name="hookapi-log-handler",
                daemon=True,
            )
            thread.start()
            self._finalizer = weakref.finalize(self, _collected, feed, self._forks, repr(self))
            self._finalizer.atexit = False  # at exit, logging.shutdown() closes it
            self._thread = thread
            self._feed = feed
            return feed

    def _follow_fork(self) -> None:
        """In a fork's child, forget the parent's thread, queue and client (under the lock).

        The parent delivers what it had queued; the child starts afresh, with a client of its
        own when the handler can make one (it was given a URL).
        """
        if self._forks == _Forks.count:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        self._feed = self._thread = self._finalizer = None
        self._forks = _Forks.count
        self._client = None if self._make is None else self._make()
        if not self._own_thread and not self._closed:
            self._feed = Feed(self._capacity)

    @contextlib.asynccontextmanager
    async def delivering(self) -> AsyncIterator[Self]:
        """Deliver on the running event loop for the block, instead of on a thread of its own.

        For an async application that would rather not have a second loop (a FastAPI
        lifespan, say): records logged during the block, from any thread, are posted by a
        task of this loop; leaving the block delivers what is queued for up to
        ``drain_timeout`` seconds. Records logged on this loop are sent too, so keep
        hookapi's own loggers (never sent anyway) the only ones that report its failures.

        With ``thread=False`` the records logged before the block (or between two blocks)
        waited in the queue and go first. Otherwise a record logged outside a block starts
        the handler's thread, and a block can no longer start while it runs.

        When the handler was given a URL, each block posts through a client of its own,
        closed at the end of the block (a client belongs to one event loop).

        Raises:
            RuntimeError: The handler is closed, or already delivering (on its thread, or in
                another block).
        """
        with self._start_lock:
            self._follow_fork()
            busy = self._delivering or self._thread is not None
            if self._closed or busy or self._client is None:
                raise RuntimeError(
                    f"{self!r} is closed or already delivering; it can deliver in one place."
                )
            if self._feed is None:
                self._feed = Feed(self._capacity)
            feed = self._feed
            self._delivering = True
        client = self._client if self._make is None else self._make()
        pump = self._new_pump(feed, client, own_thread=False)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(pump.run)
                try:
                    yield self
                finally:
                    feed.stop()
        finally:
            with self._start_lock:
                self._delivering = False
                if self._feed is feed:
                    if self._own_thread:
                        self._feed = None  # the next record starts the thread
                    else:
                        feed.rearm()  # records wait for the next block

    def _new_pump(self, feed: Feed, client: AsyncHookClient, *, own_thread: bool) -> Pump:
        self._pump = Pump(
            feed,
            client,
            owns_client=self._make is not None,  # made by the handler: closed by the pump
            coalesce=self._coalesce,
            drain_timeout=self._drain_timeout,
            own_thread=own_thread,
        )
        return self._pump

    def close(self) -> None:
        """Deliver what is queued for up to ``drain_timeout`` seconds, then stop the thread.

        Called by :func:`logging.shutdown` at interpreter exit, so a process that logs and
        ends sends its last records; once the timeout passes, what is left is lost and the
        process exits. With ``thread=False`` and no ``delivering()`` block running, what
        waits in the queue is lost (and a warning on the ``hookapi`` logger says how much).
        Calling it again does nothing.
        """
        with self._start_lock:
            self._closed = True
            feed, thread, finalizer = self._feed, self._thread, self._finalizer
            self._feed = self._thread = self._finalizer = None
            waiting = self._delivering
        if finalizer is not None:
            finalizer.detach()
        if feed is not None and thread is not None and self._forks == _Forks.count:
            feed.stop()
            if thread is not threading.current_thread():
                # The outbox gives up after drain_timeout; the rest is closing the client.
                wait = self._drain_timeout + 1.0
                thread.join(None if math.isinf(wait) else wait)
                if thread.is_alive():
                    # Stuck past its drain (a lock held across a fork, a blocking call in
                    # the loop): what it holds is lost with the process; say so, never silently.
                    pump = self._pump
                    held = len(feed.entries) + (pump.held if pump is not None else 0)
                    logger.warning(
                        "%r closed while its thread was still running, %.1f s after its "
                        "drain_timeout: up to %d record(s) may never be delivered",
                        self,
                        wait,
                        held,
                        extra={"hookapi_event": "log_handler"},
                    )
        elif feed is not None and not waiting and (feed.entries or feed.dropped):
            logger.warning(
                "%r closed with %d record(s) never delivered: no delivering() block ran",
                self,
                len(feed.entries) + feed.dropped,
            )
        super().close()


def _run(pump: Pump, backend: str, options: dict[str, Any]) -> None:
    anyio.run(pump.run, backend=backend, backend_options=options)
