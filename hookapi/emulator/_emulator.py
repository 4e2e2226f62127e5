"""The :class:`Emulator`: one local Hook API, its settings, and the ways to reach and inspect it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Literal

import httpx

from ._app import ASGIApp, HookAPIApp
from ._clock import Clock, LoopClock
from ._faults import check_fault_rate
from ._inprocess import EmulatorTransport
from ._models import IN_PROCESS_BASE_URL, Fault, FaultKind, Hook, PostedMessage, QuotaState, Window
from ._server import Server, run_blocking, serve_app
from ._state import State, check_count, check_seconds

__all__ = ["Emulator"]


def _check_kind(value: object) -> FaultKind:
    if value == "drop":
        return "drop"
    if value == "delay":
        return "delay"
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    raise ValueError(f"status must be 400-599, 'drop' or 'delay', not {value!r}.")


def _check_retry_after(value: object) -> float | str | None:
    if isinstance(value, str):
        if not value or not value.isascii() or not value.isprintable():
            raise ValueError("retry_after must be printable ASCII when given as a str.")
        return value
    return None if value is None else check_seconds("retry_after", value)


class Emulator:
    """A local Hook API that behaves as the service documents, with quotas and faults to order.

    Reach it in process with :meth:`transport`, over a socket with :meth:`serve` or :meth:`run`,
    or mount :attr:`app` in any ASGI server. Time comes from ``clock`` and waits from
    ``anyio.sleep``, so trio's ``MockClock`` can drive days of quota windows in milliseconds.

    Args:
        per_hour: Requests each hook may make per hour.
        per_day: Requests each hook may make per day.
        window: ``"fixed"``: UTC clock hours and days (starting at :00 and at 00:00 UTC);
            ``"sliding"``: the last 3,600 and 86,400 seconds.
        clock: A :class:`Clock`: returns the time in UTC seconds since the epoch. The default,
            a :class:`LoopClock`, starts at the wall clock's time and advances with the event
            loop's clock (outside a running loop, it stands at its latest reading); a
            :class:`ScaledClock` runs faster than real time, for an emulator served to other
            processes.
        fault_rate: The fraction of requests answered with a random 500 or 503.
        latency: Seconds added to every answer.
        max_body_bytes: Larger request bodies are refused with 400.
        seed: Seeds the random faults, so that a soak run can be replayed.
        base_url: The base of :attr:`Hook.url` (default: the in-process base, which only
            :meth:`transport` reaches).

    Example:
        >>> import anyio, httpx
        >>> emulator = Emulator(per_hour=10)
        >>> hook = emulator.create_hook("Ops")
        >>> async def main() -> int:
        ...     async with httpx.AsyncClient(transport=emulator.transport()) as http:
        ...         answer = await http.post(f"{hook.url}/message", json={"message": "hi"})
        ...     return answer.status_code
        >>> anyio.run(main)
        200
        >>> [message.text for message in emulator.messages(hook)]
        ['hi']
    """

    def __init__(
        self,
        *,
        per_hour: int = 1000,
        per_day: int = 10_000,
        window: Window = "fixed",
        clock: Clock | None = None,
        fault_rate: float = 0.0,
        latency: float = 0.0,
        max_body_bytes: int = 64 * 1024,
        seed: int | None = None,
        base_url: str = IN_PROCESS_BASE_URL,
    ) -> None:
        self._state = State(
            per_hour=per_hour,
            per_day=per_day,
            window=window,
            clock=LoopClock() if clock is None else clock,
            fault_rate=fault_rate,
            latency=latency,
            max_body_bytes=max_body_bytes,
            seed=seed,
            base_url=base_url,
        )
        self._app = HookAPIApp(self._state)

    def __repr__(self) -> str:
        state = self._state
        return (
            f"<Emulator window={state.window!r} per_hour={state.per_hour} "
            f"per_day={state.per_day} hooks={len(state.hooks)}>"
        )

    @property
    def per_hour(self) -> int:
        """Requests each hook may make per hour."""
        return self._state.per_hour

    @property
    def per_day(self) -> int:
        """Requests each hook may make per day."""
        return self._state.per_day

    @property
    def window(self) -> Window:
        """``"fixed"`` or ``"sliding"``."""
        return self._state.window

    @property
    def clock(self) -> Clock:
        """The clock the emulator reads time from (its quota windows, ``received_at``)."""
        return self._state.clock

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted, in bytes."""
        return self._state.max_body_bytes

    @property
    def fault_rate(self) -> float:
        """The fraction of requests answered with a random 500 or 503; may be changed any time."""
        return self._state.faults.fault_rate

    @fault_rate.setter
    def fault_rate(self, value: float) -> None:
        self._state.faults.fault_rate = check_fault_rate(value)

    @property
    def latency(self) -> float:
        """Seconds added to every answer; may be changed any time."""
        return self._state.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._state.latency = check_seconds("latency", value)

    # -- reaching it ---------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI 3 application (serve it with uvicorn, or any ASGI server)."""
        return self._app

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that runs the app in process; needs no closing.

        A dropped connection raises ``httpx.RemoteProtocolError`` and an answer later than the
        request's read timeout ``httpx.ReadTimeout``, as they would over a socket.
        """
        return EmulatorTransport(self._app)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> AbstractAsyncContextManager[Server]:
        """Serve over HTTP/1.1 on ``host:port`` until the ``async with`` block ends.

        Example:
            >>> async def main(emulator: Emulator) -> None:
            ...     async with emulator.serve(port=0) as server:
            ...         print(server.url)  # http://127.0.0.1:<a free port>
        """
        return serve_app(self._app, host=host, port=port)

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        backend: Literal["asyncio", "trio"] = "asyncio",
        on_ready: Callable[[Server], object] | None = None,
    ) -> None:
        """Serve in a new event loop, blocking until :meth:`Server.stop` or Ctrl-C.

        Args:
            host: The address to listen on.
            port: The port to listen on (0 picks a free one).
            backend: The anyio backend to run on.
            on_ready: Called with the :class:`Server` once it listens (in the loop's thread).
        """
        run_blocking(self._app, host=host, port=port, backend=backend, on_ready=on_ready)

    # -- hooks and messages --------------------------------------------------------------------

    def create_hook(
        self, desktop: str = "General", *, id: str | None = None, secret: str | None = None
    ) -> Hook:
        """Create a hook posting to ``desktop``, with a fresh UUID and secret unless given.

        Raises:
            ValueError: ``id`` is taken, or ``id`` or ``secret`` is not a safe path segment.
        """
        return self._state.add_hook(desktop, hook_id=id, secret=secret)

    def hooks(self) -> list[Hook]:
        """Every hook, oldest first."""
        return list(self._state.hooks.values())

    def desktops(self) -> list[str]:
        """The Desktops that have a hook, in the order their first hook was created."""
        return list(dict.fromkeys(hook.desktop for hook in self._state.hooks.values()))

    def messages(self, hook: Hook | str | None = None) -> list[PostedMessage]:
        """The messages posted through ``hook`` (a hook or its id), or through any hook.

        Raises:
            KeyError: There is no such hook.
        """
        if hook is None:
            return list(self._state.all_messages)
        return list(self._state.messages[self._state.hook(hook).id])

    def quota(self, hook: Hook | str) -> QuotaState:
        """The quota of ``hook`` (a hook or its id) now, as its next answer's headers would say.

        Raises:
            KeyError: There is no such hook.
        """
        return self._state.quota(self._state.hook(hook).id)

    # -- faults --------------------------------------------------------------------------------

    def fail_next(
        self,
        status: FaultKind,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        headers: bool = True,
        delay: float | None = None,
        posted: bool = False,
        hook: Hook | str | None = None,
    ) -> Fault:
        """Script a fault for the next ``times`` authenticated requests (after those queued).

        Args:
            status: An HTTP error status (400-599) to answer with; ``"drop"`` to close the
                connection without an answer; ``"delay"`` to answer ``delay`` seconds late.
            times: How many requests take the fault.
            retry_after: A ``Retry-After`` to send: seconds (rounded up) or a raw string.
            headers: ``False`` answers without rate-limit headers, as a proxy's page would.
            delay: Seconds a ``"delay"`` fault holds the answer back (required for it).
            posted: For ``"drop"``: post the message first, so that the client cannot know.
            hook: Only this hook's requests take the fault (default: any hook's).

        Returns:
            The queued fault, which :meth:`pending_faults` lists until it is used up.

        Example:
            >>> emulator = Emulator()
            >>> emulator.fail_next(503, times=2, retry_after=1).kind
            503
            >>> len(emulator.pending_faults())
            2
        """
        kind = _check_kind(status)
        check_count("times", times)
        if (status == "delay") != (delay is not None):
            raise ValueError("delay (seconds) is required for a 'delay' fault, and only for it.")
        if posted and status != "drop":
            raise ValueError("posted applies to a 'drop' fault only.")
        fault = Fault(
            kind=kind,
            hook_id=None if hook is None else self._state.hook(hook).id,
            retry_after=_check_retry_after(retry_after),
            headers=headers,
            delay=0.0 if delay is None else check_seconds("delay", delay),
            posted=posted,
        )
        self._state.faults.add(fault, times=times)
        return fault

    def pending_faults(self) -> list[Fault]:
        """The scripted faults not yet used, first to strike first."""
        return self._state.faults.pending()

    def clear_faults(self) -> None:
        """Forget every scripted fault not yet used (the tally in :attr:`faults_injected` stays)."""
        self._state.faults.clear()

    @property
    def faults_injected(self) -> dict[str, int]:
        """The number of faults that struck, by kind (``"500"``, ``"503"``, ``"drop"``, ...).

        Random faults from ``fault_rate`` are counted with the scripted ones.
        """
        return dict(self._state.faults.injected)

    @property
    def status_counts(self) -> dict[int, int]:
        """How many answers were sent, by status (dropped connections are not answers)."""
        return dict(self._state.status_counts)
