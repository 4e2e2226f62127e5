"""The sync client: :class:`AsyncHookClient` on an event loop of its own, behind plain calls.

A script, a notebook or a sync web handler has no event loop to await in, and may even be
running inside one it does not own (a notebook's, a framework's). So :class:`HookClient` does
not run the async client in the caller's thread: it starts one worker thread running an
asyncio loop with an anyio blocking portal, and every call is a portal call into that loop.
The logic stays in :class:`AsyncHookClient`; this module only carries calls across threads.

Threads do not survive ``os.fork()``: a client made before a fork (gunicorn ``--preload``,
``multiprocessing``) would wait in the child for a loop thread that is not there. So each
client notes the process it started its thread in, and a child builds its own client and
thread on first use, leaving the parent's connections alone.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self, Unpack

import anyio
import httpx

from ._client import ENV_VAR, AsyncHookClient, ClientOptions, PostResult
from ._exceptions import ClientClosedError

if TYPE_CHECKING:
    from types import TracebackType

    import anyio.from_thread

    from ._quota import RateLimit
    from ._retry import RetryPolicy
    from ._secrets import Secret

__all__ = ["HookClient"]


class _Forks:
    """How many times this process is a fork's child away from the first; bumped in the child."""

    count: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()
    #: What clients made before a fork left behind in the child: the parent's thread and
    #: connections, never used here, and held so that collecting them touches nothing.
    left_behind: ClassVar[list[tuple[AsyncHookClient, _LoopThread]]] = []

    @classmethod
    def forked(cls) -> None:
        cls.count += 1
        cls.lock = threading.Lock()  # a copy of the parent's may be held by a thread now gone


os.register_at_fork(after_in_child=_Forks.forked)


class _LoopThread:
    """A daemon thread running an asyncio loop that serves a blocking portal until stopped.

    A daemon thread, so that a client its owner forgot to close never keeps the process from
    exiting (``anyio.from_thread.start_blocking_portal`` runs its loop in an executor thread,
    which the interpreter joins at exit: a forgotten client would hang the process).
    """

    def __init__(self) -> None:
        handoff: queue.SimpleQueue[
            tuple[anyio.from_thread.BlockingPortal, asyncio.AbstractEventLoop]
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=anyio.run, args=(self._serve, handoff), name="hookapi-sync-client", daemon=True
        )
        self._thread.start()
        self.portal, self._loop = handoff.get()
        self._stopping: asyncio.Task[None] | None = None

    @property
    def ident(self) -> int | None:
        """The loop thread's id."""
        return self._thread.ident

    @staticmethod
    async def _serve(
        handoff: queue.SimpleQueue[
            tuple[anyio.from_thread.BlockingPortal, asyncio.AbstractEventLoop]
        ],
    ) -> None:
        # Imported here, in the loop thread: ``import hookapi`` stays free of it (cold start).
        from anyio.from_thread import BlockingPortal  # noqa: PLC0415

        async with BlockingPortal() as portal:
            handoff.put((portal, asyncio.get_running_loop()))
            await portal.sleep_until_stopped()

    def stop(self) -> None:
        """Stop the loop once the calls in progress have finished, and wait for the thread."""
        self.portal.call(self.portal.stop)
        self._thread.join()

    def stop_soon(self, first: Callable[[], Awaitable[Any]]) -> None:
        """Run ``first`` on the loop, then stop it, without waiting: safe from any thread.

        The garbage collector may run a finaliser in any thread, the loop's own included,
        where a blocking portal call would wait for itself.
        """

        async def stop() -> None:
            try:
                await first()
            finally:
                await self.portal.stop()

        def start() -> None:
            self._stopping = self._loop.create_task(stop())

        self._loop.call_soon_threadsafe(start)


def _collected(loop: _LoopThread, client: AsyncHookClient, forks: int, name: str) -> None:
    """Finalise a HookClient dropped unclosed: warn, then close its connections and thread."""
    if forks != _Forks.count:
        return  # made in the parent: its thread is not in this process
    warnings.warn(
        f"unclosed {name}: close it, or use it in a with block", ResourceWarning, stacklevel=1
    )
    loop.stop_soon(client.aclose)


class HookClient:
    """Posts chat messages through one hook from code that does not use ``async``.

    The same client as :class:`~hookapi.AsyncHookClient` (the same options, pacing, retries
    and errors), run on an event loop of its own in a worker thread. It works in a plain
    script, from many threads at once (they share one connection pool and one view of the
    quota), and when called from inside a running event loop, such as a notebook's or a sync
    startup hook's: the call blocks that loop until it returns, as any blocking call does.

    Close it with :meth:`close` or a ``with`` block; that closes its connections and stops its
    thread. A client dropped unclosed does the same when it is garbage collected, with a
    ``ResourceWarning``, as asyncio's resources do. Its ``transport`` option, if given, runs on
    the client's own loop.

    It survives ``os.fork()``: in the child (a gunicorn ``--preload`` worker, a
    ``multiprocessing`` process) its first call starts a new thread and new connections there,
    and never touches the parent's. A ``transport`` or ``quota`` passed in is shared with the
    child as it is, and must itself be usable there.

    Args:
        hook_id: The hook's id.
        secret: The hook's secret.
        base_url: Where the service's hooks live.
        **options: The options of :class:`~hookapi.AsyncHookClient` (:class:`ClientOptions`).

    Raises:
        InvalidInputError: An option is invalid (no thread is started then).

    Example:
        >>> import hookapi
        >>> def main() -> None:
        ...     with hookapi.HookClient.from_env() as client:
        ...         result = client.post_message("Deploy finished")
        ...         print(result.attempts)
    """

    def __init__(
        self,
        *,
        hook_id: str,
        secret: str | Secret,
        base_url: str | httpx.URL,
        **options: Unpack[ClientOptions],
    ) -> None:
        make = functools.partial(
            AsyncHookClient, hook_id=hook_id, secret=secret, base_url=base_url, **options
        )
        self._start(make(), make)

    @classmethod
    def from_url(cls, url: str, **options: Unpack[ClientOptions]) -> Self:
        """Build a client from the full hook URL a user copied.

        See :meth:`AsyncHookClient.from_url`.

        Raises:
            InvalidInputError: The URL does not have that shape (the error never shows it).
        """
        return cls._wrap(AsyncHookClient.from_url(url, **options), options)

    @classmethod
    def from_env(cls, *, env_var: str = ENV_VAR, **options: Unpack[ClientOptions]) -> Self:
        """Build a client from the hook URL in the ``HOOKAPI_URL`` environment variable.

        See :meth:`AsyncHookClient.from_env`.

        Raises:
            InvalidInputError: The variable is unset, empty, or not a hook URL.
        """
        return cls._wrap(AsyncHookClient.from_env(env_var=env_var, **options), options)

    @classmethod
    def _wrap(cls, client: AsyncHookClient, options: ClientOptions) -> Self:
        self = cls.__new__(cls)
        # A child process rebuilds the client from its parts (the secret stays a Secret).
        make = functools.partial(
            AsyncHookClient,
            hook_id=client.hook_id,
            secret=client._secret,
            base_url=client._base_url,
            **options,
        )
        self._start(client, make)
        return self

    def _start(self, client: AsyncHookClient, make: Callable[[], AsyncHookClient]) -> None:
        # Built in the caller's thread first: a bad option raises before any thread starts.
        self._make = make
        self._client = client
        self._idle = threading.Condition()
        self._active = 0
        self._closed = False
        self._run()

    def _run(self) -> None:
        """Start the loop thread, and the finaliser that stops it if the client is dropped."""
        self._forks = _Forks.count
        self._loop = _LoopThread()
        self._finalizer = weakref.finalize(
            self, _collected, self._loop, self._client, self._forks, repr(self)
        )
        self._finalizer.atexit = False  # at exit the daemon thread just ends

    def _after_fork(self, *, start: bool) -> None:
        """In a fork's child: leave the parent's client behind; ``start`` one of our own."""
        with _Forks.lock:
            if self._forks == _Forks.count:
                return  # another thread of this child got here first
            self._finalizer.detach()
            _Forks.left_behind.append((self._client, self._loop))
            self._idle = threading.Condition()  # the parent's may be held by a thread now gone
            self._active = 0  # the parent's calls in progress are not this process's
            self._forks = _Forks.count
            if self._closed or not start:
                self._closed = True  # nothing of this process's to close
                return
            self._client = self._make()
            self._run()

    @property
    def hook_id(self) -> str:
        """The hook's id."""
        return self._client.hook_id

    @property
    def url(self) -> str:
        """The message URL with the secret shown as ``***``."""
        return self._client.url

    @property
    def rate_limit(self) -> RateLimit | None:
        """The latest rate-limit headers seen for this hook, or ``None``."""
        return self._client.rate_limit

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy this client applies."""
        return self._client.retry_policy

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def __repr__(self) -> str:
        return repr(self._client).replace("<AsyncHookClient", "<HookClient", 1)

    def __enter__(self) -> Self:
        if self._closed:
            error = ClientClosedError("This HookClient is closed and cannot be reopened.")
            error.concerns_message = False
            raise error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the worker thread; calling it again does nothing.

        Calls in progress in other threads finish first; calls made from now on raise
        :class:`~hookapi.ClientClosedError`.

        Raises:
            RuntimeError: Called from the client's own loop thread (from inside a transport).
        """
        if self._forks != _Forks.count:
            self._after_fork(start=False)
        self._check_thread("close")
        with self._idle:
            if self._closed:
                return
            self._closed = True
            self._idle.wait_for(lambda: self._active == 0)
        self._finalizer.detach()
        try:
            self._loop.portal.call(self._client.aclose)
        finally:
            self._loop.stop()

    def post_message(
        self, text: str, *, timeout: float | None = None, deadline: float | None = None
    ) -> PostResult:
        """Post ``text`` to the hook's Desktop as the bot, throttled and retried.

        Blocks until the message is posted or the call fails; see
        :meth:`AsyncHookClient.post_message` for the arguments and errors.

        Raises:
            ClientClosedError: The client is closed.
            RuntimeError: Called from the client's own loop thread (from inside a transport).
        """
        if self._forks != _Forks.count:
            self._after_fork(start=True)
        self._check_thread("post_message")
        with self._idle:
            if self._closed:
                raise ClientClosedError("This HookClient is closed; create a new one.")
            self._active += 1
        try:
            post = functools.partial(
                self._client.post_message, text, timeout=timeout, deadline=deadline
            )
            result: PostResult = self._loop.portal.call(post)
            return result
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _check_thread(self, what: str) -> None:
        if threading.get_ident() == self._loop.ident:
            raise RuntimeError(
                f"HookClient.{what} was called from the client's own event loop thread (from a "
                "transport or a callback running there), where it would wait for itself "
                "forever; use an AsyncHookClient there instead."
            )
