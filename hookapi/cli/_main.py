"""The ``hookapi`` command line: the parser, and ``main`` dispatching to each command.

Every option of every command is declared here, so this module reads as the command-line
reference; the commands themselves live in ``_send``, ``_serve`` and ``_demo``,
imported only when run so that ``hookapi --help`` stays quick.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from ._common import CommandError, ExitCode, write_line
from ._stdin import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    import httpx

__all__ = ["build_parser", "main"]

_EPILOG = """\
exit status:
  0 success; 1 failure (for demo: a message was not delivered exactly once);
  2 bad command line; 3 invalid input (no or bad hook URL, bad message: nothing sent);
  4 wrong hook id or secret (401); 5 permission denied (403); 6 not found (404);
  7 request refused (400 or another 4xx); 8 over quota (429); 9 server error (5xx);
  10 connection failed; 11 timed out; 130 interrupted (Ctrl-C).
"""


def _paragraph(text: str) -> str:
    # The formatter keeps the epilog's layout, so descriptions are wrapped here instead.
    return textwrap.fill(text, width=88)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def _seconds(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"{text!r} must be {'>=' if allow_zero else '>'} 0")
    return value


def _deadline(text: str) -> float:
    # "inf" as the API takes math.inf: wait as long as the quota needs.
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    return _seconds(text, allow_zero=False)


def _positive_seconds(text: str) -> float:
    return _seconds(text, allow_zero=False)


def _any_seconds(text: str) -> float:
    return _seconds(text, allow_zero=True)


#: The fastest ``serve --time-scale``: a quota day per real second. A served emulator runs for
#: long, and every message's time must stay within ``datetime``'s years (to 9999): at this
#: speed that takes over a month of serving.
MAX_SERVE_TIME_SCALE: Final = 86_400.0
#: The fastest ``demo --time-scale``: the emulator's ``ScaledClock`` limit, written out so that
#: ``hookapi --help`` need not import the emulator.
MAX_DEMO_TIME_SCALE: Final = 1e9


def _time_scale(maximum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not 0 < value <= maximum:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be a number above 0 and at most {maximum:g}"
            )
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 1")
    return value


def _add_send(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = commands.add_parser(
        "send",
        help="post a message through the hook in HOOKAPI_URL (or --url-file)",
        description=_paragraph(
            "Post MESSAGE, or each line of standard input, through a hook. The hook URL is a "
            "credential, so it is read from the environment variable HOOKAPI_URL or from a "
            "file (--url-file, or the file the environment variable HOOKAPI_URL_FILE names), "
            "never from the command line, where shell history and ps would keep it."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument(
        "message",
        nargs="?",
        metavar="MESSAGE",
        help="the text to post; - posts all of standard input as one message",
    )
    send.add_argument(
        "--stdin",
        action="store_true",
        help="post each non-blank line of standard input as its own message, in order",
    )
    send.add_argument(
        "--url-file",
        metavar="PATH",
        help="read the hook URL from PATH instead of HOOKAPI_URL or HOOKAPI_URL_FILE",
    )
    send.add_argument("--json", action="store_true", help="print JSON (one object a message)")
    send.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds each attempt may take (default: 10)",
    )
    send.add_argument(
        "--deadline",
        type=_deadline,
        default=60.0,
        metavar="SECONDS",
        help="seconds one message may take, quota waits and retries included; inf waits as "
        "long as the quota needs (default: 60)",
    )
    send.add_argument(
        "--max-attempts",
        type=_count,
        default=4,
        metavar="N",
        help="requests at most per message; 1 disables retries (default: 4)",
    )
    send.add_argument(
        "--max-bytes",
        type=_count,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help="refuse, before sending anything, a line of --stdin (or the input of -) longer "
        f"than N bytes, without reading it whole (default: {DEFAULT_MAX_BYTES}, 1 MiB)",
    )
    send.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to a host that is not loopback (the secret travels in clear)",
    )
    send.add_argument(
        "--cacert",
        metavar="PATH",
        help="trust the CA certificates in PATH (a PEM file, or a directory of hashed ones), "
        "as a network that inspects TLS needs (default: SSL_CERT_FILE or SSL_CERT_DIR if set, "
        "else certifi's roots)",
    )
    send.add_argument(
        "--cert",
        metavar="PATH",
        help="present the client certificate in PATH (PEM, with its key unless --cert-key)",
    )
    send.add_argument(
        "--cert-key", metavar="PATH", help="the private key of --cert, if in its own file"
    )
    send.add_argument(
        "-v", "--verbose", action="store_true", help="log retries and quota waits to stderr"
    )


def _add_emulator_options(parser: argparse.ArgumentParser, *, per_hour: int) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--window",
        choices=("fixed", "sliding"),
        default="fixed",
        help="quota windows: UTC clock hours and days (from :00 and 00:00 UTC), or the last "
        "3,600 and 86,400 seconds (default: fixed)",
    )
    parser.add_argument(
        "--per-hour",
        type=_count,
        default=per_hour,
        metavar="N",
        help=f"requests each hook may make per hour (default: {per_hour})",
    )


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a local Hook API with a page showing each Desktop's messages",
        description=_paragraph(
            "Serve the Hook API emulator and, at /, a page showing each Desktop's messages, "
            "quota and injected faults. Prints the hook URL and the page URL as soon as it "
            "listens; stops cleanly on Ctrl-C."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_emulator_options(serve, per_hour=1000)
    serve.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="the port to listen on; 0 picks a free one (default: 8000)",
    )
    serve.add_argument(
        "--per-day",
        type=_count,
        default=10_000,
        metavar="N",
        help="requests each hook may make per day (default: 10000)",
    )
    serve.add_argument(
        "--fault-rate",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="fraction of requests answered with a random 500 or 503 (default: 0)",
    )
    serve.add_argument(
        "--latency",
        type=_any_seconds,
        default=0.0,
        metavar="SECONDS",
        help="seconds added to every answer (default: 0)",
    )
    serve.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed the random faults, to replay a run",
    )
    serve.add_argument(
        "--desktop",
        action="append",
        metavar="NAME",
        help="create a hook for this Desktop; repeat for more (default: General)",
    )
    serve.add_argument(
        "--hook-id", metavar="ID", help="the first hook's id (default: a fresh UUID)"
    )
    serve.add_argument(
        "--secret-file",
        metavar="PATH",
        help="read the first hook's secret from PATH (default: 64 fresh hex characters)",
    )
    serve.add_argument(
        "--time-scale",
        type=_time_scale(MAX_SERVE_TIME_SCALE),
        default=None,
        metavar="FACTOR",
        help="run the emulator's clock FACTOR times faster than real time, so that quota "
        "windows pass sooner: 3600 makes a quota hour last 1 s (default: real time; at most "
        "86400). Clients that wait out a 429 still wait real seconds",
    )
    serve.add_argument(
        "--url-file",
        metavar="PATH",
        help="also write the first hook's URL to PATH (mode 0600), for hookapi send --url-file",
    )


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="show the whole client at work against a local emulator, in seconds",
        description=_paragraph(
            "Serve an emulator on a free loopback port with a small quota and scripted "
            "503/500/429 answers, send a burst of messages from many concurrent tasks through "
            "one AsyncHookClient, and check that each arrived exactly once. The client's clock "
            "and the emulator's quota run --time-scale times faster than real time, so that "
            "hourly quota windows pass in seconds."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_emulator_options(demo, per_hour=40)
    demo.add_argument(
        "--port", type=_port, default=0, help="the port to listen on (default: a free one)"
    )
    demo.add_argument(
        "--messages",
        type=_count,
        default=100,
        metavar="N",
        help="messages to send (default: 100)",
    )
    demo.add_argument(
        "--tasks",
        type=_count,
        default=20,
        metavar="N",
        help="concurrent tasks sending them (default: 20)",
    )
    demo.add_argument(
        "--time-scale",
        type=_time_scale(MAX_DEMO_TIME_SCALE),
        default=720.0,
        metavar="FACTOR",
        help="how much faster than real time the clock runs; 720 makes a quota hour last "
        "5 s, 1 is real time (default: 720; at most 1e9)",
    )
    demo.add_argument(
        "--latency",
        type=_any_seconds,
        default=0.005,
        metavar="SECONDS",
        help="real seconds the emulator adds to every answer (default: 0.005)",
    )
    demo.add_argument("--no-faults", action="store_true", help="inject no 503, 500 or 429 answers")
    demo.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=120.0,
        metavar="SECONDS",
        help="real seconds the burst may take before the demo gives up (default: 120)",
    )
    demo.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep the emulator and its page up after the burst, until Ctrl-C",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``hookapi`` argument parser, with its three commands."""
    from .._version import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="hookapi",
        description="Post chat messages through a Hook API hook, or run a local one.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hookapi {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(commands)
    _add_send(commands)
    _add_serve(commands)
    return parser


def main(
    argv: Sequence[str] | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Run the ``hookapi`` command line and return its exit status.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).
        transport: An httpx transport for ``send`` to use instead of opening connections,
            such as an emulator's in-process one; tests pass it, users have no need to.

    Returns:
        An :class:`ExitCode` value (the console script exits with it).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    try:
        if args.command == "send":
            from ._send import run_send  # noqa: PLC0415

            return run_send(args, transport=transport)
        if args.command == "serve":
            from ._serve import run_serve  # noqa: PLC0415

            return run_serve(args)
        from ._demo import run_demo  # noqa: PLC0415

        return run_demo(args)
    except CommandError as exc:
        write_line(f"hookapi {args.command}: error: {exc}", stream=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        # A Ctrl-C the command could not turn into a clean stop (before its loop ran).
        write_line(f"hookapi {args.command}: interrupted.", stream=sys.stderr)
        return ExitCode.INTERRUPTED
