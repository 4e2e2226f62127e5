"""The demo's stage: an event loop on a sped-up clock, and an emulator served beside it.

The demo's client runs on an event loop whose clock is a :class:`ScaledClock`, so its pacing,
backoff and timeouts pass hours in seconds. The emulator counts its quota on the same sped-up
clock (its ``clock`` option), but it is served from a thread with an ordinary event loop, so
that its sockets' idle timeouts stay in real seconds: on the sped-up clock a 5 s idle timeout
would close a fresh connection before its first request could arrive.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from typing import TYPE_CHECKING

import anyio

from ..emulator import ScaledClock
from ._common import CommandError
from ._serve import serve_page

if TYPE_CHECKING:
    from ..emulator import Server
    from ..emulator._app import ASGIApp

__all__ = ["BackgroundServer", "ScaledClock", "ScaledTimeLoop"]


class _ScaledSelector(selectors.DefaultSelector):
    """Waits ``scale`` times shorter than asked, as the loop's timers are in scaled seconds."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self._scale = scale

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return super().select(None if timeout is None else timeout / self._scale)


class ScaledTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a :class:`ScaledClock`.

    Sockets and threads work as usual; only timers (sleeps, timeouts, ``anyio.current_time``)
    see the faster clock.
    """

    def __init__(self, clock: ScaledClock) -> None:
        super().__init__(_ScaledSelector(clock.scale))
        self._clock = clock

    def time(self) -> float:
        """The scaled clock's time."""
        return self._clock()


class BackgroundServer:
    """Serves an ASGI app on a real-time event loop in a thread of its own.

    Args:
        app: The app to serve; it runs in the server's thread only.
        host: The address to listen on.
        port: The port to listen on (0 picks a free one).
    """

    def __init__(self, app: ASGIApp, *, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._ready = threading.Event()
        self._server: Server | None = None
        self._error: BaseException | None = None
        # A daemon thread, so that a server that fails to stop can never keep the process up.
        self._thread = threading.Thread(target=self._run, name="hookapi-demo-server", daemon=True)

    def start(self, *, timeout: float = 10.0) -> Server:
        """Start serving; return once listening.

        Raises:
            CommandError: The server could not listen, or did not start within ``timeout``.
        """
        self._thread.start()
        if not self._ready.wait(timeout):
            raise CommandError(f"the emulator did not start within {timeout:g} s.")
        if self._error is not None:
            if isinstance(self._error, CommandError):
                raise self._error
            raise CommandError(f"the emulator failed to start: {self._error!r}.")
        assert self._server is not None  # set before _ready, when there is no error
        return self._server

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end; safe to call more than once."""
        if self._server is not None:
            self._server.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as exc:  # handed to start(), in the caller's thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with serve_page(self._app, host=self._host, port=self._port) as server:
            self._server = server
            self._ready.set()
            await server.wait_stopped()
