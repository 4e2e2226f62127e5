"""``hookapi demo``: a burst through one client against a served emulator, checked one by one.

Quota windows are an hour long, so showing the client pace itself against one in real time
would take hours. The demo instead runs on a clock that goes ``--time-scale`` times faster than
real time (720 by default: a quota hour lasts 5 s). The emulator's quota, the client's pacing,
its retries and its timeouts all read that clock, so what the demo shows is the real code at
work, only sooner; the summary says which figures are in quota time and which in real time.
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from .._client import AsyncHookClient, PostResult
from .._exceptions import HookAPIError
from .._http import ConnectionPool
from .._retry import RetryPolicy
from ..emulator import Emulator, Hook, ScaledClock
from ..emulator._page import DesktopPage
from ._common import ExitCode, Progress, percentile, plural, run_until_signal, write_line
from ._stage import BackgroundServer, ScaledTimeLoop

if TYPE_CHECKING:
    from ..emulator._app import ASGIApp, Receive, Scope, Send

__all__ = ["find_problems", "per_hour_text", "run_demo"]

HOUR = 3600.0
#: The faults scripted into a run: (share of the messages delivered, status, times, Retry-After).
FAULTS: tuple[tuple[float, int, int, float | None], ...] = (
    (0.0, 503, 2, None),
    (0.2, 500, 2, None),
    (0.45, 429, 1, 30.0),
    (0.7, 503, 2, 5.0),
)
_current_message: contextvars.ContextVar[int] = contextvars.ContextVar("hookapi_demo_message")


class _Throttles(logging.Handler):
    """Notes which messages the client held back for the quota, from its own log records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "hookapi_event", None) == "throttle":
            self.messages.add(_current_message.get(-1))


@dataclass(slots=True)
class _Answers:
    """The answers the client received: how many of each status, and how long each took."""

    statuses: Counter[int] = field(default_factory=Counter)
    round_trips: list[float] = field(default_factory=list)


class _Counting(httpx.AsyncBaseTransport):
    """Counts the answers by status and times each request, in real seconds."""

    def __init__(self, inner: httpx.AsyncBaseTransport, answers: _Answers, scale: float) -> None:
        self._inner = inner
        self._answers = answers
        self._scale = scale

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = anyio.current_time()
        response = await self._inner.handle_async_request(request)
        self._answers.round_trips.append((anyio.current_time() - started) / self._scale)
        self._answers.statuses[response.status_code] += 1
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(slots=True)
class _Burst:
    """What the burst did, message by message."""

    texts: list[str]
    results: dict[int, PostResult] = field(default_factory=dict)
    failures: dict[int, HookAPIError] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    timed_out: bool = False

    @property
    def done(self) -> int:
        return len(self.results) + len(self.failures)


#: Quota hours listed one by one in the summary; a longer run is summarised instead.
MAX_HOURS_SHOWN = 24


def per_hour_text(hours: Mapping[int, int]) -> str:
    """Messages posted in each quota hour (hour number -> count), in a bounded line.

    A very fast clock spreads a burst over thousands of hours, nearly all empty: past
    :data:`MAX_HOURS_SHOWN` hours the line gives the span and the busiest hour instead.
    """
    if not hours:
        return "none"
    span = max(hours) + 1
    if span <= MAX_HOURS_SHOWN:
        counts = ", ".join(str(hours.get(h, 0)) for h in range(span))
        return f"{counts} (messages posted in each clock hour)"
    busy = sum(1 for count in hours.values() if count)
    return (
        f"{sum(hours.values())} messages over {span:,} clock hours ({busy:,} with any), "
        f"at most {max(hours.values())} in one hour"
    )


def _quota_clock(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    hours, rest = divmod(max(0.0, seconds), HOUR)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}"


class _ScriptedFaults:
    """Queues the demo's faults as the burst goes on, so that they strike in every window.

    It wraps the served app and so runs in the server's thread, where the emulator lives.
    """

    def __init__(self, app: ASGIApp, emulator: Emulator, hook: Hook, *, total: int) -> None:
        self._app = app
        self._emulator = emulator
        self._hook = hook
        self._total = total
        self._pending = list(FAULTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self._pending:
            delivered = len(self._emulator.messages(self._hook))
            while self._pending and delivered >= self._pending[0][0] * self._total:
                _, status, times, retry_after = self._pending.pop(0)
                self._emulator.fail_next(status, times=times, retry_after=retry_after)
        await self._app(scope, receive, send)


def run_demo(args: argparse.Namespace) -> int:
    """Run ``hookapi demo`` with parsed ``args``; return the exit status."""
    demo = _Demo(args)
    server = BackgroundServer(demo.app(), host=args.host, port=args.port)
    logger = logging.getLogger("hookapi")
    level = logger.level
    logger.addHandler(demo.throttles)
    logger.setLevel(logging.INFO)
    try:
        url = server.start().url
        code: int = anyio.run(
            demo.run,
            url,
            backend="asyncio",
            backend_options={"loop_factory": lambda: ScaledTimeLoop(demo.clock)},
        )
    finally:
        logger.removeHandler(demo.throttles)
        logger.setLevel(level)
        server.stop()
    return code


def find_problems(sent: list[str], arrived: list[str]) -> list[str]:
    """What keeps ``arrived`` from holding each of ``sent`` exactly once, in words."""
    counts = Counter(arrived)
    expected = set(sent)
    problems = []
    missing = sum(1 for text in sent if not counts[text])
    doubled = sum(1 for count in counts.values() if count > 1)
    strangers = sum(1 for text in counts if text not in expected)
    if missing:
        problems.append(f"{plural(missing, 'message')} never arrived")
    if doubled:
        problems.append(f"{plural(doubled, 'message')} arrived more than once")
    if strangers:
        problems.append(f"{plural(strangers, 'unexpected message')} arrived")
    return problems


class _Demo:
    """One demo run: the emulator and its page, the client, the burst, and the summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale: float = args.time_scale
        # From the top of the current UTC hour, so that the first fixed window is a full one.
        hour = datetime.fromtimestamp(time.time() // HOUR * HOUR, UTC)
        self.clock = ScaledClock(self.scale, start=hour)
        self.throttles = _Throttles()
        self.emulator = Emulator(
            per_hour=args.per_hour,
            per_day=24 * args.per_hour,
            window=args.window,
            clock=self.clock,
            latency=args.latency,
        )
        self.hook = self.emulator.create_hook("Demo")
        count = args.messages
        self.burst = _Burst(texts=[f"Demo message {i:03d} of {count}" for i in range(1, count + 1)])
        self.answers = _Answers()
        self.progress = Progress(sys.stderr, total=count, label="delivered", clock=self._real_time)

    def _real_time(self) -> float:
        return anyio.current_time() / self.scale

    def _note(self) -> str:
        hour = f"{HOUR / self.scale:.1f} s" if self.scale != 1 else "an hour"
        return (
            f"The clock runs {self.scale:g} times faster than real time: a quota hour lasts {hour}."
        )

    def app(self) -> ASGIApp:
        """The app to serve: the desktop page, in front of the emulator with its faults."""
        page = DesktopPage(self.emulator, refresh=1.0, note=self._note())
        if self.args.no_faults:
            return page
        return _ScriptedFaults(page, self.emulator, self.hook, total=self.args.messages)

    async def run(self, url: str) -> int:
        """Send the burst to the emulator served at ``url``, then print the summary."""
        args = self.args
        windows = math.ceil((args.messages + 2) / args.per_hour)
        write_line(f"Desktop page: {url}/ (open it to watch the messages arrive)")
        write_line(
            f"Sending {plural(args.messages, 'message')} from {plural(args.tasks, 'task')} "
            f"through one AsyncHookClient to {url}, quota {args.per_hour} per hour "
            f"({args.window} window). {self._note()} Expect about "
            f"{(windows - 1) * HOUR / self.scale + 1:.0f} s."
        )
        retry = RetryPolicy(
            max_attempts=6,
            initial_delay=0.5,
            max_delay=30.0,
            # A message may take as long as the whole burst may: --timeout decides.
            deadline=max((windows + 2) * HOUR, args.timeout * self.scale),
            max_retry_after=2 * HOUR,
        )
        counting = _Counting(
            ConnectionPool(max_connections=args.tasks),
            self.answers,
            self.scale,
        )
        client = AsyncHookClient.from_url(
            self.hook.url_for(url), transport=counting, retry=retry, timeout=10.0 * self.scale
        )
        try:
            async with client:
                signum = await run_until_signal(lambda: self._send_burst(client))
        finally:
            self.progress.close()
            await counting.aclose()
        if signum is not None:
            write_line("hookapi demo: interrupted.", stream=sys.stderr)
        ok = self._summarise()
        if signum is not None:
            return ExitCode.INTERRUPTED
        if args.keep_serving:
            write_line(f"Still serving {url}/ ; press Ctrl-C to stop.")
            await run_until_signal(anyio.sleep_forever)
        return ExitCode.OK if ok else ExitCode.FAILED

    def _detail(self) -> str:
        burst = self.burst
        retried = sum(1 for r in burst.results.values() if r.attempts > 1)
        now = anyio.current_time() - burst.started
        return (
            f"{retried} retried, {len(self.throttles.messages)} waited for quota, "
            f"{len(burst.failures)} failed, quota time {_quota_clock(now)}"
        )

    async def _send_burst(self, client: AsyncHookClient) -> None:
        burst, progress = self.burst, self.progress
        pending = iter(range(len(burst.texts)))

        async def worker() -> None:
            for index in pending:
                _current_message.set(index)
                try:
                    burst.results[index] = await client.post_message(burst.texts[index])
                except HookAPIError as exc:
                    burst.failures[index] = exc
                progress.update(burst.done, self._detail())

        async def ticker() -> None:
            while True:
                await anyio.sleep(0.5 * self.scale)
                progress.update(burst.done, self._detail(), force=True)

        burst.started = anyio.current_time()
        with anyio.move_on_after(self.args.timeout * self.scale) as scope:
            async with anyio.create_task_group() as tasks:
                if progress.is_tty:
                    tasks.start_soon(ticker)
                async with anyio.create_task_group() as workers:
                    for _ in range(self.args.tasks):
                        workers.start_soon(worker)
                tasks.cancel_scope.cancel()
        burst.finished = anyio.current_time()
        burst.timed_out = scope.cancelled_caught
        progress.update(burst.done, self._detail(), force=True)

    def _summarise(self) -> bool:
        """Print the summary; return whether every message arrived exactly once."""
        args, burst, scale = self.args, self.burst, self.scale
        problems = find_problems(burst.texts, [m.text for m in self.emulator.messages(self.hook)])
        if burst.failures:
            first = next(iter(burst.failures.values()))
            problems.insert(0, f"{plural(len(burst.failures), 'message')} failed (first: {first})")
        if burst.timed_out:
            problems.insert(0, f"the burst did not finish within {args.timeout:g} s")
        results = list(burst.results.values())
        extra = sum(r.attempts - 1 for r in results)
        extra += sum(max(0, e.attempts - 1) for e in burst.failures.values())
        injected = self.emulator.faults_injected
        statuses = self.answers.statuses
        seen_429, injected_429 = statuses.get(429, 0), injected.get("429", 0)
        trips = self.answers.round_trips
        waits = [r.elapsed for r in results]
        real = (burst.finished - burst.started) / scale
        quota = self.emulator.quota(self.hook)
        # The quota clock reads UTC seconds, so its whole hours are the fixed windows.
        first_hour = int(self.clock.start.timestamp() // HOUR)
        hours = Counter(
            int(m.received_monotonic // HOUR) - first_hour
            for m in self.emulator.messages(self.hook)
        )
        per_hour = per_hour_text(hours)
        delivered = f"{len(results)} of {len(burst.texts)}"
        if not problems:
            delivered += ", each exactly once (checked against the emulator's record)"
        lines = [
            "",
            "Summary",
            f"  delivered       {delivered}",
            f"  retried         {plural(sum(1 for r in results if r.attempts > 1), 'message')}, "
            f"{plural(extra, 'extra attempt')} (faults injected: {_tally(injected)})",
            f"  throttle waits  {plural(len(self.throttles.messages), 'message')} waited for the "
            "quota before being sent",
            f"  429s seen       {seen_429} ({injected_429} injected with Retry-After, "
            f"{seen_429 - injected_429} from the quota itself)",
            f"  answers         {_tally(statuses)}",
            f"  latency         p50 {_ms(percentile(trips, 0.5))}, "
            f"p95 {_ms(percentile(trips, 0.95))} per HTTP request (real time)",
            f"                  p50 {_quota_clock(percentile(waits, 0.5))}, "
            f"p95 {_quota_clock(percentile(waits, 0.95))} per message in quota time "
            "(quota waits and retries included)",
            f"  elapsed         {real:.1f} s real = {_quota_clock(real * scale)} of quota time "
            f"(clock {scale:g}x real time)",
            f"  quota           {args.per_hour} per hour, {args.window} window; "
            f"{quota.used_hour} used in the current hour, {quota.remaining} left",
            f"  per quota hour  {per_hour}",
        ]
        for text in lines:
            write_line(text)
        if problems:
            write_line(f"Result: FAILED: {'; '.join(problems)}.")
            return False
        write_line("Result: every message was delivered exactly once.")
        return True


def _tally(counts: Mapping[Any, int]) -> str:
    return ", ".join(f"{n} x {key}" for key, n in sorted(counts.items())) or "none"


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"
