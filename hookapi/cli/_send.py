"""``hookapi send``: post one message, or each line of standard input, and say what happened.

The hook URL is a credential, so it comes only from ``HOOKAPI_URL`` or a file (``--url-file``,
or ``HOOKAPI_URL_FILE``), never from the command line. Lines go through an
:class:`~hookapi.Outbox`: one after another, in order, as a chat reader expects them, each
waiting for the quota as long as it takes; the first failure stops the run, and an interrupted
run says which lines were posted, which may have been, and which were not sent.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
import httpx

from .._client import ENV_VAR, AsyncHookClient, PostResult
from .._exceptions import APIStatusError, HookAPIError
from .._http import ConnectionPool, environment_proxy, proxy_transport, tls_context
from .._quota import RateLimit
from .._retry import RetryPolicy
from .._validate import check_proxy
from ..outbox import DeadLetter, Outbox, Receipt
from ._common import (
    CommandError,
    ExitCode,
    Progress,
    exit_code_for,
    explain,
    plural,
    read_credential_file,
    run_until_signal,
    write_line,
)
from ._stdin import read_lines, read_message

__all__ = ["FILE_ENV_VAR", "format_lines", "read_hook_url", "run_send"]

#: Names a file holding the hook URL, read when ``HOOKAPI_URL`` is not set.
FILE_ENV_VAR = f"{ENV_VAR}_FILE"


def read_hook_url(url_file: str | None) -> str:
    """The hook URL: from ``url_file``, ``HOOKAPI_URL``, or the file ``HOOKAPI_URL_FILE`` names.

    A file is read for its one non-blank line; either way the URL never has to be typed on a
    command line, where shell history and ``ps`` would keep the secret.

    Raises:
        CommandError: None of them gives a URL, or the file cannot be read.
    """
    if url_file is not None:
        return read_credential_file(url_file, what="hook URL", command="send")
    url = os.environ.get(ENV_VAR, "").strip()
    if url:
        return url
    named = os.environ.get(FILE_ENV_VAR, "").strip()
    if named:
        return read_credential_file(named, what="hook URL", command="send")
    raise CommandError(
        f"no hook URL: set {ENV_VAR}, or {FILE_ENV_VAR} to a file that holds it, or pass "
        "--url-file PATH.",
        ExitCode.INVALID_INPUT,
    )


def format_lines(numbers: list[int]) -> str:
    """Line numbers as ranges: ``[1, 2, 3, 5]`` gives ``"lines 1-3, 5"``."""
    spans: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        spans.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return f"{'line' if len(numbers) == 1 else 'lines'} {', '.join(spans)}"


def _is_piped(stream: TextIO) -> bool:
    """Whether ``stream`` is a pipe or a file (not a terminal, nor ``/dev/null``)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


class _Tracker(httpx.AsyncBaseTransport):
    """Wraps the real transport to know, at a Ctrl-C, whether a request was on the wire."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, own: bool) -> None:
        self._inner = inner
        self._own = own
        self.on_wire = False
        self.posted = False
        self.successes = 0

    def reset(self) -> None:
        self.on_wire = self.posted = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.on_wire = True
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            self.on_wire = False  # the client decides what this failure means
            raise
        self.on_wire = False
        self.posted = self.posted or response.is_success
        self.successes += response.is_success
        return response

    async def aclose(self) -> None:
        if self._own:
            await self._inner.aclose()


@dataclass(slots=True)
class _Run:
    """What happened to each line of one ``send`` run."""

    lines: list[tuple[int, str]]
    sent: list[tuple[int, PostResult | None]] = field(default_factory=list)
    failed: tuple[int, HookAPIError] | None = None
    unknown: int | None = None
    rate_limit: RateLimit | None = None
    elapsed: float = 0.0

    def not_sent(self) -> list[int]:
        """Lines never sent: after a failure or an interruption."""
        done = {n for n, _ in self.sent}
        if self.failed is not None:
            done.add(self.failed[0])
        if self.unknown is not None:
            done.add(self.unknown)
        return [n for n, _ in self.lines if n not in done]


def _rate_limit_json(rate_limit: RateLimit | None) -> dict[str, int | None] | None:
    if rate_limit is None:
        return None
    return {
        "per_hour": rate_limit.per_hour,
        "per_day": rate_limit.per_day,
        "used": rate_limit.used,
        "remaining": rate_limit.remaining,
    }


def _quota_text(rate_limit: RateLimit | None) -> str:
    if rate_limit is None or rate_limit.remaining is None:
        return "Quota left: unknown (the answer had no rate-limit headers)."
    limits = [
        f"{value} per {unit}"
        for value, unit in ((rate_limit.per_hour, "hour"), (rate_limit.per_day, "day"))
        if value is not None
    ]
    return f"Quota left: {rate_limit.remaining}" + (f" ({', '.join(limits)})." if limits else ".")


def _error_json(error: HookAPIError) -> dict[str, Any]:
    return {
        "ok": False,
        "error": type(error).__name__,
        "message": str(error),
        "status_code": error.status_code if isinstance(error, APIStatusError) else None,
        "delivery": error.delivery.value,
        "attempts": error.attempts,
        "exit_code": int(exit_code_for(error)),
    }


def _result_json(result: PostResult | None) -> dict[str, Any]:
    if result is None:  # the answer arrived as the run was interrupted
        return {"ok": True, "status_code": None, "attempts": None, "rate_limit": None}
    return {
        "ok": True,
        "status_code": result.status_code,
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 4),
        "rate_limit": _rate_limit_json(result.rate_limit),
    }


class _Sender:
    """Sends a run's lines through one client, recording and reporting each outcome."""

    def __init__(self, args: argparse.Namespace, run: _Run, *, batch: bool) -> None:
        self.args = args
        self.run = run
        self.batch = batch
        self.progress = Progress(
            sys.stderr, total=len(run.lines), label="sent", clock=anyio.current_time
        )

    def emit(self, line: int, record: dict[str, Any]) -> None:
        if self.args.json:
            write_line(json.dumps({"line": line, **record} if self.batch else record))

    async def send_all(self, client: AsyncHookClient, tracker: _Tracker) -> None:
        run = self.run
        started = anyio.current_time()
        try:
            for number, text in run.lines:
                tracker.reset()
                try:
                    result = await client.post_message(text, deadline=self.args.deadline)
                except HookAPIError as exc:
                    run.failed = (number, exc)
                    self.emit(number, _error_json(exc))
                    return
                run.sent.append((number, result))
                run.rate_limit = result.rate_limit or run.rate_limit
                self.emit(number, _result_json(result))
                if self.batch:
                    self.progress.update(len(run.sent), f"line {number}")
        finally:
            run.elapsed = anyio.current_time() - started
            self.progress.close()

    async def send_batch(self, client: AsyncHookClient, tracker: _Tracker) -> None:
        """Send every line through an outbox, in order; stop at the first line that fails."""
        run = self.run
        started = anyio.current_time()
        receipts: list[tuple[int, Receipt]] = []
        stop = anyio.CancelScope()

        def failed(letter: DeadLetter) -> None:
            outbox.pause()  # before the next line starts
            stop.cancel()

        outbox = Outbox(
            client,
            max_size=len(run.lines),
            drain_timeout=math.inf,
            on_pause=lambda error: stop.cancel(),
            on_dead_letter=failed,
        )
        try:
            with stop:
                async with outbox:
                    for number, text in run.lines:
                        receipts.append((number, await outbox.put(text)))
                    for number, receipt in receipts:
                        try:
                            await receipt.wait()
                        except HookAPIError:
                            break  # reported below, with the lines not sent
                        self._record(number, receipt)
        finally:
            # Whatever ended the run, every line posted so far is on record, in order.
            for number, receipt in receipts[len(run.sent) :]:
                if receipt.result is None:
                    break
                self._record(number, receipt)
            run.elapsed = anyio.current_time() - started
            self.progress.close()
            # Each posted line had one successful answer: one more means the line being sent
            # was posted and the run stopped before the client could say so.
            tracker.posted = tracker.successes > len(run.sent)
        if len(run.sent) < len(receipts):
            number, receipt = receipts[len(run.sent)]
            error = receipt.error if receipt.state.is_final else outbox.pause_error
            if error is not None:
                run.failed = (number, error)
                self.emit(number, _error_json(error))

    def _record(self, number: int, receipt: Receipt) -> None:
        run = self.run
        result = receipt.result
        assert result is not None
        run.sent.append((number, result))
        run.rate_limit = result.rate_limit or run.rate_limit
        self.emit(number, _result_json(result))
        self.progress.update(len(run.sent), f"line {number}")

    def interrupted(self, tracker: _Tracker) -> None:
        """Record what became of the line being sent when the run was interrupted."""
        run = self.run
        if run.failed is not None or len(run.sent) == len(run.lines):
            return
        current = run.lines[len(run.sent)][0]
        stopped = {"ok": False, "error": "Interrupted", "exit_code": int(ExitCode.INTERRUPTED)}
        if tracker.posted:
            run.sent.append((current, None))
            self.emit(current, {**_result_json(None), "interrupted": True})
        elif tracker.on_wire:
            run.unknown = current
            self.emit(current, {**stopped, "delivery": "unknown"})
        elif not self.batch:
            self.emit(current, {**stopped, "delivery": "not_sent"})


def _summary(run: _Run) -> str:
    """What became of every line of a run that did not finish."""
    sent = sorted(n for n, _ in run.sent)
    parts = [f"sent {len(sent)} of {plural(len(run.lines), 'message')}"]
    if sent:
        parts[0] += f" ({format_lines(sent)})"
    if run.failed is not None:
        parts.append(f"line {run.failed[0]} failed")
    if run.unknown is not None:
        parts.append(f"line {run.unknown} may or may not have been posted")
    not_sent = run.not_sent()
    if not_sent:
        parts.append(f"{format_lines(not_sent)} {'was' if len(not_sent) == 1 else 'were'} not sent")
    return "; ".join(parts) + "."


def _check_utf8(message: str) -> None:
    """Refuse a MESSAGE argument whose bytes were not UTF-8 (Python keeps them as surrogates)."""
    try:
        raw = os.fsencode(message)
    except UnicodeError:
        return  # a lone surrogate not from the command line's bytes: the client names it
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f": byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        raise CommandError(
            f"MESSAGE is not valid UTF-8 text{detail}. Check the terminal's encoding (a UTF-8 "
            "locale) or convert the text, for example with iconv.",
            ExitCode.INVALID_INPUT,
        ) from None


def run_send(args: argparse.Namespace, *, transport: httpx.AsyncBaseTransport | None) -> int:
    """Run ``hookapi send`` with parsed ``args``; return the exit status."""
    if args.message is None and not args.stdin and _is_piped(sys.stdin):
        raise CommandError(
            "give either MESSAGE or --stdin. Standard input is piped: --stdin posts each of "
            "its lines as a message, and '-' posts all of it as one message.",
            ExitCode.USAGE,
        )
    if (args.message is None) == (not args.stdin):
        raise CommandError("give either MESSAGE or --stdin.", ExitCode.USAGE)
    if args.cert_key is not None and args.cert is None:
        raise CommandError("--cert-key needs --cert.", ExitCode.USAGE)
    if args.message not in (None, "-"):
        _check_utf8(args.message)
    url = read_hook_url(args.url_file)
    skipped = 0
    if args.message == "-":
        args.message = read_message(sys.stdin, max_bytes=args.max_bytes)
    if args.stdin:
        lines, skipped = read_lines(sys.stdin, max_bytes=args.max_bytes)
        if not lines:
            raise CommandError("standard input holds no message.", ExitCode.INVALID_INPUT)
    else:
        lines = [(1, args.message)]
    run = _Run(lines=lines)
    sender = _Sender(args, run, batch=args.stdin)
    logger = logging.getLogger("hookapi")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    # The outbox is how --stdin works, not something its user drives: what it logs (a pause,
    # a dead letter, a retry the client logs too) the command reports in its own words.
    handler.addFilter(lambda record: getattr(record, "hookapi_event", None) != "outbox")
    handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
    level = logger.level
    logger.addHandler(handler)
    if args.verbose:
        logger.setLevel(logging.INFO)
    try:
        signum = anyio.run(_send, args, url, sender, transport)
    except HookAPIError as exc:  # the client refused its options, before anything was sent
        raise CommandError(explain(exc), exit_code_for(exc)) from None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return _report(args, run, interrupted=signum is not None, skipped=skipped)


def _transport(args: argparse.Namespace, url: str) -> httpx.AsyncBaseTransport:
    """The connections the client would open itself, with the TLS settings of the options.

    The command wraps the transport (to tell, at a Ctrl-C, whether a request was on the wire),
    so it builds what the client builds when given none: through the proxy the environment
    names for the hook (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, unless ``NO_PROXY``
    matches), which a network's egress policy may require, else direct. ``--cacert``,
    ``--cert`` and ``--cert-key`` apply either way (through a proxy, inside its tunnel).
    """
    verify = args.cacert or True
    cert = args.cert if args.cert_key is None else (args.cert, args.cert_key)
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError):
        target = None  # the client says what is wrong with the URL, without showing it
    proxy = None if target is None else environment_proxy(target)
    if target is None or proxy is None:
        return ConnectionPool(verify=verify, cert=cert)
    context = None
    if target.scheme == "https" or verify is not True or cert is not None:
        context = tls_context(verify=verify, cert=cert, trust_env=True)
    return proxy_transport(
        check_proxy(proxy), ssl_context=context, max_connections=32
    )  # as the client builds it


async def _send(
    args: argparse.Namespace,
    url: str,
    sender: _Sender,
    transport: httpx.AsyncBaseTransport | None,
) -> int | None:
    tracker = _Tracker(transport or _transport(args, url), own=transport is None)
    try:
        client = AsyncHookClient.from_url(
            url,
            transport=tracker,
            timeout=args.timeout,
            retry=RetryPolicy(max_attempts=args.max_attempts, deadline=args.deadline),
            allow_insecure_http=args.allow_insecure_http,
        )
        async with client:
            if sender.batch:
                signum = await run_until_signal(lambda: sender.send_batch(client, tracker))
            else:
                signum = await run_until_signal(lambda: sender.send_all(client, tracker))
        if signum is not None:
            sender.interrupted(tracker)
        return signum
    finally:
        await tracker.aclose()


def _report(args: argparse.Namespace, run: _Run, *, interrupted: bool, skipped: int) -> int:
    code = ExitCode.OK
    if run.failed is not None:
        code = exit_code_for(run.failed[1])
    if interrupted:
        code = ExitCode.INTERRUPTED
    batch = args.stdin
    if args.json:
        if batch:
            summary = {
                "summary": True,
                "sent": len(run.sent),
                "failed": 0 if run.failed is None else 1,
                "unknown": 0 if run.unknown is None else 1,
                "not_sent": len(run.not_sent()),
                "skipped_blank": skipped,
                "interrupted": interrupted,
                "elapsed": round(run.elapsed, 4),
                "exit_code": int(code),
            }
            write_line(json.dumps(summary))
        return code
    if run.failed is not None:
        where = f"line {run.failed[0]}: " if batch else ""
        write_line(f"hookapi send: error: {where}{explain(run.failed[1])}", stream=sys.stderr)
    if code is not ExitCode.OK:
        if batch:
            prefix = "interrupted: " if interrupted else ""
            write_line(f"hookapi send: {prefix}{_summary(run)}", stream=sys.stderr)
        elif interrupted:
            fate = "was not sent"
            if run.unknown is not None:
                fate = "may or may not have been posted"
            elif run.sent:
                fate = "was posted"
            write_line(f"hookapi send: interrupted: the message {fate}.", stream=sys.stderr)
        return code
    skipped_text = f" Skipped {plural(skipped, 'blank line')}." if skipped else ""
    if batch:
        attempts = sum(r.attempts for _, r in run.sent if r is not None)
        write_line(
            f"Sent {plural(len(run.sent), 'message')} in {run.elapsed:.2f} s "
            f"({plural(attempts, 'attempt')}). {_quota_text(run.rate_limit)}{skipped_text}"
        )
        return code
    result = run.sent[0][1]
    assert result is not None  # only an interrupted run records None
    write_line(
        f"Sent: {result.status_code} OK in {result.elapsed:.2f} s, "
        f"{plural(result.attempts, 'attempt')}. {_quota_text(result.rate_limit)}"
    )
    return code
