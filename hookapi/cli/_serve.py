"""``hookapi serve``: the emulator and its desktop page on a real socket, until Ctrl-C.

It prints everything a user needs the moment it listens: the page URL, each hook URL, and the
service's own example ``curl`` command pointed at it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ..emulator import Emulator, Hook, ScaledClock, Server
from ..emulator._page import DesktopPage
from ._common import (
    CommandError,
    ExitCode,
    plural,
    read_credential_file,
    run_until_signal,
    write_line,
)

if TYPE_CHECKING:
    from ..emulator._app import ASGIApp

__all__ = ["is_loopback_host", "run_serve", "serve_page", "write_url_file"]


@asynccontextmanager
async def serve_page(app: ASGIApp, *, host: str, port: int) -> AsyncIterator[Server]:
    """Serve ``app`` (the page in front of an emulator) on ``host:port`` until the block ends.

    ``Emulator.serve`` serves the emulator's own app only; the page needs the same server
    for an app of its own, which the emulator package keeps in a private module for now.
    An exception raised by the block comes out as itself, not wrapped in an exception group.

    Raises:
        CommandError: The address cannot be listened on (in use, not local, ...).
    """
    from ..emulator._server import serve_app  # noqa: PLC0415

    try:
        async with AsyncExitStack() as stack:
            try:
                server = await stack.enter_async_context(serve_app(app, host=host, port=port))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise CommandError(f"cannot listen on {host} port {port}: {reason}.") from None
            yield server
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine only (so nobody else can read the page)."""
    return host in ("localhost", "::1") or host.startswith("127.")


def write_url_file(path: str, url: str) -> None:
    """Write the hook URL to ``path``, readable by its owner only (it holds the secret).

    The URL goes into a new file, created next to ``path`` (``O_EXCL``, never following a
    symbolic link, mode 0600), which then replaces ``path`` in one rename: a link planted at
    ``path`` cannot send the secret elsewhere, a file ``path`` names is never truncated
    (another name for it keeps its content), and a reader sees the old URL or the new one,
    never half of one.

    Raises:
        CommandError: ``path`` is a symbolic link, or the file cannot be written.
    """
    if os.path.islink(path):
        raise CommandError(
            f"the hook URL file {path} is a symbolic link; give the path of a file "
            "(a link could send the secret elsewhere)."
        )
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(temporary, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            if hasattr(os, "fchmod"):  # POSIX: the umask may have taken bits off 0600
                os.fchmod(file.fileno(), 0o600)
            file.write(f"{url}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise _write_error(path, exc) from None


def _write_error(path: str, exc: OSError) -> CommandError:
    reason = exc.strerror or type(exc).__name__
    return CommandError(f"cannot write the hook URL file {path}: {reason}.")


def _emulator(args: argparse.Namespace) -> tuple[Emulator, list[Hook]]:
    secret = None
    if args.secret_file is not None:
        secret = read_credential_file(args.secret_file, what="secret", command="serve")
    try:
        emulator = Emulator(
            per_hour=args.per_hour,
            per_day=args.per_day,
            window=args.window,
            clock=None if args.time_scale is None else ScaledClock(args.time_scale),
            fault_rate=args.fault_rate,
            latency=args.latency,
            seed=args.seed,
        )
        desktops = args.desktop or ["General"]
        hooks = [emulator.create_hook(desktops[0], id=args.hook_id, secret=secret)]
        hooks += [emulator.create_hook(desktop) for desktop in desktops[1:]]
    except ValueError as exc:
        raise CommandError(str(exc), ExitCode.USAGE) from None
    return emulator, hooks


def run_serve(args: argparse.Namespace) -> int:
    """Run ``hookapi serve`` with parsed ``args``; return the exit status."""
    emulator, hooks = _emulator(args)
    page = DesktopPage(emulator, note=_clock_note(args.time_scale))
    return anyio.run(_serve, args, emulator, hooks, page)


def _clock_note(scale: float | None) -> str:
    """What the page and the announcement say of a sped-up clock (nothing for real time)."""
    if scale is None or scale == 1:
        return ""
    return (
        f"The emulator's clock runs {scale:g} times faster than real time: a quota hour lasts "
        f"{3600 / scale:.3g} s. A client waiting out a 429 still waits real seconds."
    )


async def _serve(
    args: argparse.Namespace, emulator: Emulator, hooks: list[Hook], page: DesktopPage
) -> int:
    async with serve_page(page, host=args.host, port=args.port) as server:

        async def until_stopped() -> None:
            if args.url_file is not None:
                write_url_file(args.url_file, hooks[0].url_for(server.url))
            _announce(args, emulator, hooks, server)
            await server.wait_stopped()

        await run_until_signal(until_stopped)
    received = len(emulator.messages())
    write_line(f"Stopped. The emulator received {plural(received, 'message')}.")
    return ExitCode.OK


def _announce(
    args: argparse.Namespace, emulator: Emulator, hooks: list[Hook], server: Server
) -> None:
    write_line(
        f"Hook API emulator listening on {server.url} ({emulator.window} window, "
        f"{emulator.per_hour} requests per hour, {emulator.per_day} per day, fault rate "
        f"{emulator.fault_rate:g}, latency {emulator.latency:g} s)"
    )
    note = _clock_note(args.time_scale)
    if note:
        write_line(note)
    write_line(f"Desktop page: {server.url}/")
    for hook in hooks:
        write_line(f"Hook URL for Desktop {hook.desktop!r}: {hook.url_for(server.url)}")
    if args.url_file is not None:
        write_line(f"The first hook URL is also in {args.url_file}.")
    # The examples name the file, never the URL: a command line lands in shell history.
    where = "PATH" if args.url_file is None else shlex.quote(args.url_file)
    if args.url_file is None:
        write_line(
            "A hook URL holds its secret: whoever has it can post. Keep it off command lines "
            "(shell history keeps them): start with --url-file PATH to have it written to "
            "PATH (mode 0600), or save it there yourself. Then try:"
        )
    else:
        write_line("A hook URL holds its secret: whoever has it can post. Try:")
    write_line(f"  HOOKAPI_URL_FILE={where} hookapi send 'Hello'")
    write_line(
        '  curl -X POST -H "Content-Type: application/json" -d \'{"message": "Hello"}\' '
        f'--max-time 10 "$(cat {where})/message"'
    )
    write_line("Press Ctrl-C to stop.")
    if not is_loopback_host(args.host):
        write_line(
            f"hookapi serve: warning: listening on {args.host}, not loopback: others may "
            "reach the page, and anyone who learns a hook URL can post.",
            stream=sys.stderr,
        )
