"""What every command shares: exit codes, the progress line, and Ctrl-C as cancellation.

Ctrl-C must not kill a command mid-sentence: it cancels the work, the command then says what
was and was not sent, and exits with :attr:`ExitCode.INTERRUPTED`.
"""

from __future__ import annotations

import enum
import math
import os
import signal
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

import anyio
import anyio.abc

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    HookAPIError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from .._validate import InsecureURLError

__all__ = [
    "CommandError",
    "ExitCode",
    "Progress",
    "exit_code_for",
    "explain",
    "percentile",
    "plural",
    "read_credential_file",
    "run_until_signal",
    "write_line",
]


class ExitCode(enum.IntEnum):
    """The exit status of ``hookapi``, one per kind of outcome (documented in ``docs/cli.md``)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID_INPUT = 3
    AUTHENTICATION = 4
    PERMISSION_DENIED = 5
    NOT_FOUND = 6
    BAD_REQUEST = 7
    RATE_LIMITED = 8
    SERVER_ERROR = 9
    CONNECTION = 10
    TIMEOUT = 11
    INTERRUPTED = 130


# Most specific first: the first class an error is an instance of decides.
_BY_ERROR: tuple[tuple[type[HookAPIError], ExitCode], ...] = (
    (InvalidInputError, ExitCode.INVALID_INPUT),
    (AuthenticationError, ExitCode.AUTHENTICATION),
    (PermissionDeniedError, ExitCode.PERMISSION_DENIED),
    (NotFoundError, ExitCode.NOT_FOUND),
    (RateLimitError, ExitCode.RATE_LIMITED),
    (ServerError, ExitCode.SERVER_ERROR),
    (APIStatusError, ExitCode.BAD_REQUEST),
    (APITimeoutError, ExitCode.TIMEOUT),
    (APIConnectionError, ExitCode.CONNECTION),
)


def exit_code_for(error: HookAPIError) -> ExitCode:
    """The exit status for an error the client raised."""
    for cls, code in _BY_ERROR:
        if isinstance(error, cls):
            return code
    return ExitCode.FAILED


def explain(error: HookAPIError) -> str:
    """The error's text in the command line's words: its options rather than the library's."""
    if isinstance(error, InsecureURLError):
        return (
            f"the hook URL is plain http to http://{error.netloc}, a host that is not loopback: "
            "the secret would cross the network in clear. Use https, or pass "
            "--allow-insecure-http if you really mean it."
        )
    if isinstance(error, RateLimitError) and error.local and error.retry_after is not None:
        # The library's words ("this call's deadline") in the command's: its option.
        text = str(error).replace("this call's deadline", "--deadline")
        return f"{text} Pass --deadline inf to wait for the quota."
    return str(error)


class CommandError(Exception):
    """A command cannot go on; ``main`` prints the sentence and exits with ``code``."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


def read_credential_file(path: str, *, what: str, command: str) -> str:
    """The one non-blank line of ``path``, which holds a credential (a hook URL or secret).

    Warns on standard error when other users may read the file, as ``ssh`` does for keys.

    Raises:
        CommandError: The file cannot be read, or does not hold exactly one non-blank line;
            the message never shows the file's content.
    """
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            text = file.read(64 * 1024).decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CommandError(
            f"cannot read the {what} file {path}: {reason}.", ExitCode.INVALID_INPUT
        ) from None
    except UnicodeDecodeError:
        raise CommandError(
            f"the {what} file {path} is not UTF-8 text.", ExitCode.INVALID_INPUT
        ) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        found = "none" if not lines else "more than one"
        raise CommandError(
            f"the {what} file {path} must hold one non-blank line; it holds {found}.",
            ExitCode.INVALID_INPUT,
        )
    if os.name == "posix" and stat.S_ISREG(mode) and mode & 0o077:
        write_line(
            f"hookapi {command}: warning: other users can read {path}, which holds a "
            f"credential; chmod 600 {path}",
            stream=sys.stderr,
        )
    return lines[0]


def plural(count: int, word: str, words: str | None = None) -> str:
    """``"1 message"``, ``"2 messages"``."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``nan`` when there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Progress:
    """A progress report on ``stream``: one redrawn line on a terminal, plain lines elsewhere.

    On a terminal the line is redrawn at most every ``interval`` seconds; elsewhere (a log, a
    pipe) a line is written each time another tenth of the work is done, so a CI log gets ten
    lines rather than thousands.

    Args:
        stream: Where to write (standard error, so standard output stays for results).
        total: How many items there are.
        label: What is counted, such as ``"sent"``.
        interval: Seconds between redraws on a terminal.
        clock: Returns the time in seconds (the caller's clock, so that a sped-up demo
            still redraws at a human pace).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int,
        label: str,
        interval: float = 0.1,
        clock: Callable[[], float],
    ) -> None:
        self._stream = stream
        self._total = max(total, 1)
        self._label = label
        self._interval = interval
        self._clock = clock
        self._tty = _is_tty(stream)
        self._drawn_at = -math.inf
        self._step = 0
        self._printed = 0
        self._width = 0

    @property
    def is_tty(self) -> bool:
        """Whether the line is redrawn in place."""
        return self._tty

    def update(self, done: int, detail: str = "", *, force: bool = False) -> None:
        """Report ``done`` items, with ``detail`` after the count."""
        if self._tty:
            now = self._clock()
            if not force and now - self._drawn_at < self._interval and done < self._total:
                return
            self._drawn_at = now
            filled = 24 * done // self._total
            line = f"[{'#' * filled}{'.' * (24 - filled)}] {done}/{self._total} {self._label}"
            line = f"{line}  {detail}" if detail else line
            pad = max(0, self._width - len(line))
            self._width = len(line)
            self._stream.write(f"\r{line}{' ' * pad}")
            self._stream.flush()
            return
        step = 10 * done // self._total
        if step > self._step or (force and done != self._printed):
            self._step, self._printed = step, done
            line = f"{done}/{self._total} {self._label}"
            self._stream.write(f"{line}, {detail}\n" if detail else f"{line}\n")
            self._stream.flush()

    def close(self) -> None:
        """End the redrawn line so that what follows starts on a line of its own."""
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


async def run_until_signal(body: Callable[[], Awaitable[None]]) -> int | None:
    """Run ``body`` until it returns or SIGINT/SIGTERM arrives; return that signal, if any.

    The signal cancels ``body`` (so its ``finally`` blocks and ``async with`` exits run) rather
    than raising ``KeyboardInterrupt`` at an arbitrary line. ``body`` starts only once the
    signals are caught, so no Ctrl-C falls between the two. Where signals cannot be caught
    (a thread other than the main one), a Ctrl-C still raises ``KeyboardInterrupt`` as usual.
    Exceptions from ``body`` propagate as they are, not wrapped in an exception group.
    """
    received: list[int] = []
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        await tasks.start(_watch_signals, tasks.cancel_scope, received)
        try:
            await body()
        except Exception as exc:  # re-raised below, outside the task group
            failure = exc
        tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return received[0] if received else None


async def _watch_signals(
    scope: anyio.CancelScope,
    received: list[int],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
        with receiver as signals:
            task_status.started()
            async for signum in signals:
                received.append(signum)
                scope.cancel()
                return
    except (NotImplementedError, RuntimeError, ValueError):
        # Not the main thread: KeyboardInterrupt keeps its usual meaning.
        task_status.started()


def write_line(text: str = "", *, stream: TextIO | None = None) -> None:
    """Write ``text`` and flush, so a reader on a pipe sees it at once."""
    out = sys.stdout if stream is None else stream
    out.write(f"{text}\n")
    out.flush()
