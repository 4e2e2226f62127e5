"""``hookapi send`` in process: results, JSON, standard input, and an exit status per error."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hookapi.cli import main
from hookapi.cli._common import ExitCode
from hookapi.cli._send import format_lines
from hookapi.cli._stdin import CHUNK_BYTES
from hookapi.emulator import Emulator, Hook
from hookapi.testing import serve_in_thread

from ..http.test_proxy import Proxy, proxy
from .conftest import NOWHERE, Ran, RunCLI, texts

__all__ = ["proxy"]  # the fixture, imported to be used here


def test_one_message_prints_the_result_and_the_quota_left(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    ran = cli("send", "Deploy finished")
    assert ran.code == ExitCode.OK
    assert ran.out.startswith("Sent: 200 OK in ")
    assert "1 attempt. Quota left: 99 (100 per hour, 1000 per day)." in ran.out
    assert ran.err == ""
    assert texts(emulator) == ["Deploy finished"]


def test_json_prints_one_object(cli: RunCLI, hook_url: str) -> None:
    ran = cli("send", "--json", "hi")
    record = json.loads(ran.out)
    assert record["ok"] is True
    assert record["status_code"] == 200
    assert record["attempts"] == 1
    assert record["rate_limit"] == {"per_hour": 100, "per_day": 1000, "used": 1, "remaining": 99}


def test_retries_show_in_the_attempt_count(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    emulator.fail_next(503, times=2, retry_after=0)
    ran = cli("send", "after maintenance")
    assert ran.code == ExitCode.OK
    assert "3 attempts" in ran.out
    assert texts(emulator) == ["after maintenance"]


def test_verbose_logs_the_retries_without_the_secret(
    cli: RunCLI, emulator: Emulator, hook: Hook, hook_url: str
) -> None:
    emulator.fail_next(500, retry_after=0)
    ran = cli("send", "-v", "hello")
    assert ran.code == ExitCode.OK
    assert "attempt 1 of 4 failed (status 500)" in ran.err
    assert hook.secret not in ran.err + ran.out
    assert logging.getLogger("hookapi").handlers == []


def test_stdin_sends_each_line_in_order_and_skips_blank_lines(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    ran = cli("send", "--stdin", stdin="one\n\n  \ntwo\r\nthree")
    assert ran.code == ExitCode.OK
    assert texts(emulator) == ["one", "two", "three"]
    assert "Sent 3 messages in " in ran.out
    assert "(3 attempts). Quota left: 97 (100 per hour, 1000 per day). Skipped 2 blank lines." in (
        ran.out
    )
    # Not a terminal: plain progress lines on standard error, never carriage returns.
    assert "3/3 sent, line 5" in ran.err
    assert "\r" not in ran.err


def test_stdin_json_prints_a_line_per_message_and_a_summary(cli: RunCLI, hook_url: str) -> None:
    ran = cli("send", "--stdin", "--json", stdin="a\nb\n")
    records = [json.loads(line) for line in ran.out.splitlines()]
    assert [r.get("line") for r in records[:2]] == [1, 2]
    assert all(r["ok"] for r in records[:2])
    summary = records[-1]
    assert summary["summary"] is True
    assert (summary["sent"], summary["not_sent"], summary["exit_code"]) == (2, 0, 0)


class _FaultOn(httpx.AsyncBaseTransport):
    """Scripts an emulator fault just before request number ``at`` reaches it."""

    def __init__(self, emulator: Emulator, *, at: int, status: int) -> None:
        self._inner = emulator.transport()
        self._emulator = emulator
        self._at = at
        self._status = status
        self._count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._count += 1
        if self._count == self._at:
            self._emulator.fail_next(self._status)
        return await self._inner.handle_async_request(request)


def test_stdin_stops_at_the_first_failure_and_says_what_was_not_sent(
    cli: RunCLI, emulator: Emulator, hook: Hook, hook_url: str
) -> None:
    transport = _FaultOn(emulator, at=2, status=403)
    ran = cli("send", "--stdin", stdin="one\ntwo\n\nthree\nfour\n", transport=transport)
    assert ran.code == ExitCode.PERMISSION_DENIED
    assert texts(emulator) == ["one"]
    assert "hookapi send: error: line 2: POST " in ran.err
    assert "sent 1 of 4 messages (line 1); line 2 failed; lines 4-5 were not sent." in ran.err
    assert hook.secret not in ran.err
    assert ran.out == ""


def test_stdin_failure_as_json(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    transport = _FaultOn(emulator, at=1, status=400)
    ran = cli("send", "--stdin", "--json", stdin="e\nf\n", transport=transport)
    records = [json.loads(line) for line in ran.out.splitlines()]
    assert records[0]["line"] == 1
    assert records[0]["error"] == "BadRequestError"
    assert records[0]["delivery"] == "rejected"
    assert records[-1]["not_sent"] == 1
    assert ran.code == ExitCode.BAD_REQUEST == records[-1]["exit_code"]


def test_stdin_with_no_message_is_invalid_input(cli: RunCLI, hook_url: str) -> None:
    ran = cli("send", "--stdin", stdin="\n \n")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "standard input holds no message" in ran.err


def test_stdin_that_is_not_utf8_is_invalid_input(
    cli: RunCLI, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe\n")))
    ran = cli("send", "--stdin")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "not UTF-8" in ran.err


# -- where the hook URL comes from -----------------------------------------------------------


def test_without_a_hook_url_nothing_is_sent(
    cli: RunCLI, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    monkeypatch.delenv("HOOKAPI_URL_FILE", raising=False)
    ran = cli("send", "hello")
    assert ran.code == ExitCode.INVALID_INPUT
    assert (
        "no hook URL: set HOOKAPI_URL, or HOOKAPI_URL_FILE to a file that holds it, or pass "
        "--url-file PATH." in ran.err
    )
    assert texts(emulator) == []


def test_hookapi_url_file_names_the_file_when_hookapi_url_is_unset(
    cli: RunCLI, emulator: Emulator, hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "url"
    path.write_text(f"{hook.url_for(NOWHERE)}\n")
    path.chmod(0o600)
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    monkeypatch.setenv("HOOKAPI_URL_FILE", str(path))
    ran = cli("send", "from the file the environment names")
    assert ran.code == ExitCode.OK, ran.err
    assert ran.err == ""
    # HOOKAPI_URL, when set, wins: the file is not even read.
    monkeypatch.setenv("HOOKAPI_URL", hook.url_for(NOWHERE))
    monkeypatch.setenv("HOOKAPI_URL_FILE", str(tmp_path / "missing"))
    ran = cli("send", "from the variable")
    assert ran.code == ExitCode.OK, ran.err
    assert texts(emulator) == ["from the file the environment names", "from the variable"]


def test_a_missing_hookapi_url_file_is_invalid_input(
    cli: RunCLI, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    monkeypatch.setenv("HOOKAPI_URL_FILE", str(tmp_path / "missing"))
    ran = cli("send", "hello")
    assert ran.code == ExitCode.INVALID_INPUT
    assert f"cannot read the hook URL file {tmp_path / 'missing'}" in ran.err
    assert texts(emulator) == []


def test_url_file_is_read_and_wins_over_the_environment(
    cli: RunCLI, emulator: Emulator, hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", "not a url")
    path = tmp_path / "url"
    path.write_text(f"\n{hook.url_for(NOWHERE)}\n")
    path.chmod(0o600)
    ran = cli("send", "--url-file", str(path), "from a file")
    assert ran.code == ExitCode.OK
    assert ran.err == ""
    assert texts(emulator) == ["from a file"]


def test_a_url_file_others_can_read_draws_a_warning(
    cli: RunCLI, hook: Hook, tmp_path: Path
) -> None:
    path = tmp_path / "url"
    path.write_text(hook.url_for(NOWHERE))
    path.chmod(0o644)
    ran = cli("send", "--url-file", str(path), "hi")
    assert ran.code == ExitCode.OK
    assert f"other users can read {path}" in ran.err
    assert hook.secret not in ran.err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "No such file or directory"),
        (b"", "holds none"),
        (b"http://a/b/c\nhttp://d/e/f\n", "holds more than one"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_a_bad_url_file_is_invalid_input(
    cli: RunCLI, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "url"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    ran = cli("send", "--url-file", str(path), "hi")
    assert ran.code == ExitCode.INVALID_INPUT
    assert problem in ran.err


def test_a_malformed_hook_url_is_invalid_input_and_not_echoed(
    cli: RunCLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", "http://127.0.0.1:9/only-one-segment-s3cr3t")
    ran = cli("send", "hi")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "s3cr3t" not in ran.err


def test_plain_http_to_another_host_needs_the_option(
    cli: RunCLI, emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", hook.url_for("http://hooks.example.test"))
    assert cli("send", "hi").code == ExitCode.INVALID_INPUT
    assert cli("send", "--allow-insecure-http", "hi").code == ExitCode.OK
    assert texts(emulator) == ["hi"]


# -- an exit status per error class ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (400, ExitCode.BAD_REQUEST),
        (403, ExitCode.PERMISSION_DENIED),
        (404, ExitCode.NOT_FOUND),
        (418, ExitCode.BAD_REQUEST),
        (500, ExitCode.SERVER_ERROR),
        (502, ExitCode.SERVER_ERROR),
        (503, ExitCode.SERVER_ERROR),
        ("drop", ExitCode.CONNECTION),
    ],
)
def test_each_refusal_has_its_exit_status(
    cli: RunCLI, emulator: Emulator, hook: Hook, hook_url: str, fault: int | str, code: ExitCode
) -> None:
    emulator.fail_next(fault, times=4, retry_after=0)  # type: ignore[arg-type]
    ran = cli("send", "hello")
    assert ran.code == code
    assert ran.err.startswith("hookapi send: error: POST ")
    assert hook.secret not in ran.err
    assert ran.out == ""


def test_wrong_secret_is_an_authentication_error(
    cli: RunCLI, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", f"{NOWHERE}/{hook.id}/{'0' * 64}")
    ran = cli("send", "--json", "hello")
    record = json.loads(ran.out)
    assert ran.code == ExitCode.AUTHENTICATION == record["exit_code"]
    assert record["error"] == "AuthenticationError"
    assert record["status_code"] == 401


# A sliding window: this test runs on the real monotonic clock, and a fixed window would
# reset (and let the last post through) whenever a run straddles one of its clock hours.
@pytest.mark.parametrize("emulator", [{"per_hour": 2, "window": "sliding"}], indirect=True)
def test_over_quota_is_rate_limited(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    ran = cli("send", "--stdin", stdin="a\nb\n")
    assert ran.code == ExitCode.OK
    # A new client, which does not know the quota is used up, is refused by the service.
    ran = cli("send", "--json", "d")
    record = json.loads(ran.out)
    assert ran.code == ExitCode.RATE_LIMITED
    assert record["status_code"] == 429
    assert texts(emulator) == ["a", "b"]


def test_stdin_posts_a_long_file_in_order(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    lines = [f"line {n}" for n in range(1, 61)]
    ran = cli("send", "--stdin", stdin="\n".join(lines) + "\n")
    assert ran.code == ExitCode.OK
    assert texts(emulator) == lines
    assert "Sent 60 messages in " in ran.out


def test_a_late_answer_is_a_timeout(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    emulator.fail_next("delay", delay=1.0)
    ran = cli("send", "--timeout", "0.05", "slow")
    assert ran.code == ExitCode.TIMEOUT
    assert "may or may not have been posted" in ran.err


def test_a_refused_connection_is_a_connection_error(
    cli: RunCLI, hook: Hook, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", hook.url_for(f"http://127.0.0.1:{closed_port}"))
    ran = cli("send", "--max-attempts", "1", "hi", transport=httpx.AsyncHTTPTransport())
    assert ran.code == ExitCode.CONNECTION
    assert "The message was not sent." in ran.err


@pytest.mark.parametrize(
    "argv",
    [
        ("send",),
        ("send", "--stdin", "and a message"),
        ("send", "--timeout", "0", "hi"),
        ("send", "--max-attempts", "0", "hi"),
        ("send", "--deadline", "soon", "hi"),
    ],
)
def test_usage_errors(cli: RunCLI, hook_url: str, argv: tuple[str, ...]) -> None:
    ran = cli(*argv)
    assert ran.code == ExitCode.USAGE
    assert "error" in ran.err


def test_an_empty_message_is_invalid_input(cli: RunCLI, hook_url: str) -> None:
    ran = cli("send", "   ")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "The message was not sent." in ran.err


def test_format_lines() -> None:
    assert format_lines([4]) == "line 4"
    assert format_lines([1, 2, 3, 5, 7, 8]) == "lines 1-3, 5, 7-8"


def test_an_answer_without_rate_limit_headers_leaves_the_quota_unknown(
    cli: RunCLI, hook_url: str
) -> None:
    bare = httpx.MockTransport(lambda request: httpx.Response(200, text="ok"))
    ran = cli("send", "hi", transport=bare)
    assert ran.code == ExitCode.OK
    assert "Quota left: unknown (the answer had no rate-limit headers)." in ran.out
    ran = cli("send", "--json", "hi", transport=bare)
    assert json.loads(ran.out)["rate_limit"] is None


def test_deadline_inf_is_accepted_as_the_api_takes_it(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    ran = cli("send", "--deadline", "inf", "no hurry")
    assert ran.code == ExitCode.OK, ran.err
    assert texts(emulator) == ["no hurry"]
    ran = cli("send", "--deadline", "0", "x")
    assert ran.code == ExitCode.USAGE
    assert "'0' must be > 0" in ran.err


def test_a_message_argument_that_is_not_utf8_is_called_so(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    # The bytes b"ok\xff" as the command line hands them to Python (surrogateescape).
    ran = cli("send", b"ok\xff".decode("utf-8", "surrogateescape"))
    assert ran.code == ExitCode.INVALID_INPUT
    assert ran.err == (
        "hookapi send: error: MESSAGE is not valid UTF-8 text: byte 0xff at offset 2. Check the "
        "terminal's encoding (a UTF-8 locale) or convert the text, for example with iconv.\n"
    )
    # A lone surrogate that no command-line bytes make: the client's own words.
    ran = cli("send", "a\ud800b")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "a lone surrogate '\\ud800' at index 1" in ran.err
    assert texts(emulator) == []


def test_a_paused_run_speaks_of_the_command_not_of_the_library(
    cli: RunCLI, emulator: Emulator, hook: Hook, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", hook_url.replace(hook.secret, "0" * 64))
    for verbose in ((), ("-v",)):
        ran = cli("send", "--stdin", *verbose, stdin="one\ntwo\n")
        assert ran.code == ExitCode.AUTHENTICATION
        assert "resume()" not in ran.err
        assert "outbox" not in ran.err
        assert "line 1: POST " in ran.err
        assert "line 2 was not sent" in ran.err


# -- the environment's proxy ---------------------------------------------------------------


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Clear every proxy variable, then set the given ones."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    def set_env(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.fixture
def served_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Emulator, str]]:
    """An emulator served on a loopback socket, its hook URL in HOOKAPI_URL."""
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    with serve_in_thread(emulator) as server:
        url = hook.url_for(server.url)
        monkeypatch.setenv("HOOKAPI_URL", url)
        yield emulator, url


def _send(*argv: str, capsys: pytest.CaptureFixture[str]) -> Ran:
    code = main(list(argv))  # no transport: the command opens its own connections
    captured = capsys.readouterr()
    return Ran(int(code), captured.out, captured.err)


@pytest.mark.socket
def test_send_goes_through_the_proxy_the_environment_names(
    proxy: Proxy,
    proxy_env: Callable[..., None],
    served_url: tuple[Emulator, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator, url = served_url
    proxy_env(HTTP_PROXY=proxy.url)
    before = len(proxy.forwarded())
    ran = _send("send", "through the proxy", capsys=capsys)
    assert ran.code == ExitCode.OK, ran.err
    lines = proxy.wait_for(before + 1)[before:]
    assert len(lines) == 1
    host = url.removeprefix("http://").split("/", 1)[0]
    assert f" - POST {host}/" in lines[0]  # forwarded in absolute form, as a proxy does
    assert texts(emulator) == ["through the proxy"]


@pytest.mark.socket
@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*"])
def test_send_goes_direct_when_no_proxy_matches(
    proxy_env: Callable[..., None],
    served_url: tuple[Emulator, str],
    closed_port: int,
    capsys: pytest.CaptureFixture[str],
    no_proxy: str,
) -> None:
    emulator, _ = served_url
    # A proxy nothing listens on: only a direct connection can post.
    dead_proxy = f"http://127.0.0.1:{closed_port}"
    proxy_env(HTTP_PROXY=dead_proxy, NO_PROXY=no_proxy)
    ran = _send("send", "direct", capsys=capsys)
    assert ran.code == ExitCode.OK, ran.err
    assert texts(emulator) == ["direct"]
    # Without NO_PROXY the same command goes to that proxy, and cannot connect.
    proxy_env(NO_PROXY="")
    ran = _send("send", "--max-attempts", "1", "through the dead proxy", capsys=capsys)
    assert ran.code == ExitCode.CONNECTION
    assert texts(emulator) == ["direct"]


# -- bounded reading of standard input ------------------------------------------------------

MIB = 1024 * 1024


class CountingInput:
    """Standard input whose bytes are handed out on request, counting how many were."""

    def __init__(self, data: bytes) -> None:
        self.buffer = self  # what the command reads: the binary buffer of sys.stdin
        self._data = memoryview(data)
        self.handed_out = 0
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = len(self._data) - self.handed_out  # "all of it": what must never happen
        self.largest_read = max(self.largest_read, size)
        chunk = bytes(self._data[self.handed_out : self.handed_out + size])
        self.handed_out += len(chunk)
        return chunk

    def fileno(self) -> int:
        raise io.UnsupportedOperation("not a file")


def test_a_line_over_max_bytes_is_refused_with_its_number_without_reading_it_whole(
    cli: RunCLI, emulator: Emulator, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = b"first\n" + b"x" * (5 * MIB) + b"\nlast\n"
    stdin = CountingInput(huge)
    monkeypatch.setattr(sys, "stdin", stdin)
    ran = cli("send", "--stdin", "--max-bytes", "1000")
    assert ran.code == ExitCode.INVALID_INPUT
    assert ran.err == (
        "hookapi send: error: line 2 of standard input is longer than --max-bytes "
        "(1000 bytes); nothing was sent.\n"
    )
    assert texts(emulator) == []  # not even the first line
    # Read a chunk at a time, and no further than the chunk that passed the limit.
    assert stdin.largest_read == CHUNK_BYTES
    assert stdin.handed_out <= 2 * CHUNK_BYTES
    assert stdin.handed_out < len(huge) // 40


def test_the_default_limit_is_one_mib(
    cli: RunCLI, emulator: Emulator, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = CountingInput(b"ok\n" + b"y" * (MIB + 1) + b"\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    ran = cli("send", "--stdin")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "line 2 of standard input is longer than --max-bytes (1048576 bytes)" in ran.err
    assert stdin.handed_out < MIB + 2 * CHUNK_BYTES
    assert texts(emulator) == []


@pytest.mark.parametrize(
    ("data", "sent"),
    [
        (b"12345\n", ["12345"]),
        (b"12345\r\n", ["12345"]),  # the line ends are not counted
        (b"12345", ["12345"]),
        (b"\xc3\xa9\xc3\xa9x\n", ["\u00e9\u00e9x"]),  # bytes, not characters
    ],
)
def test_a_line_of_exactly_max_bytes_is_sent(
    cli: RunCLI,
    emulator: Emulator,
    hook_url: str,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    sent: list[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", CountingInput(data))
    ran = cli("send", "--stdin", "--max-bytes", "5")
    assert ran.code == ExitCode.OK, ran.err
    assert texts(emulator) == sent


@pytest.mark.parametrize("data", [b"123456\n", b"12345\r6\n", b"\xc3\xa9\xc3\xa9xy"])
def test_a_line_of_one_byte_more_is_refused(
    cli: RunCLI, emulator: Emulator, hook_url: str, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    monkeypatch.setattr(sys, "stdin", CountingInput(b"short\n" + data))
    ran = cli("send", "--stdin", "--max-bytes", "5")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "line 2 of standard input is longer than --max-bytes (5 bytes)" in ran.err
    assert texts(emulator) == []


def test_lines_split_across_chunks_are_read_whole(
    cli: RunCLI, emulator: Emulator, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lines that straddle chunk boundaries, and a character split between two chunks.
    first = "a" * 50_000
    second = "b" * (CHUNK_BYTES - 1 - len(first) - 2) + "\u00e9" + "b" * 20_000
    lines = [first, second, "c" * 50_000, "d" * 50_000]
    data = "\r\n".join(lines).encode()
    assert data[CHUNK_BYTES - 1 : CHUNK_BYTES + 1] == "\u00e9".encode()
    assert len(data) > 2 * CHUNK_BYTES
    monkeypatch.setattr(sys, "stdin", CountingInput(data))
    ran = cli("send", "--stdin")
    assert ran.code == ExitCode.OK, ran.err
    assert texts(emulator) == lines


def test_dash_over_max_bytes_is_refused_without_reading_it_whole(
    cli: RunCLI, emulator: Emulator, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = CountingInput(b"z" * (5 * MIB))
    monkeypatch.setattr(sys, "stdin", stdin)
    ran = cli("send", "--max-bytes", "100", "-")
    assert ran.code == ExitCode.INVALID_INPUT
    assert ran.err == (
        "hookapi send: error: standard input is longer than --max-bytes (100 bytes); "
        "nothing was sent.\n"
    )
    assert stdin.handed_out == CHUNK_BYTES
    assert texts(emulator) == []
    monkeypatch.setattr(sys, "stdin", CountingInput(b"z" * 100 + b"\r\n"))
    assert cli("send", "--max-bytes", "100", "-").code == ExitCode.OK
    assert texts(emulator) == ["z" * 100]


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_max_bytes_must_be_a_positive_whole_number(cli: RunCLI, hook_url: str, value: str) -> None:
    ran = cli("send", "--stdin", "--max-bytes", value, stdin="hi\n")
    assert ran.code == ExitCode.USAGE
    assert "--max-bytes" in ran.err
