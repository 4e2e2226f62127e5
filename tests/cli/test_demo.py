"""``hookapi demo`` in process, on a clock fast enough that three quota hours take 1.5 s."""

from __future__ import annotations

import io
import logging
import re
import signal
import socket
import sys
from collections.abc import Iterator

import pytest

from hookapi.cli import main
from hookapi.cli._common import ExitCode
from hookapi.cli._demo import find_problems, per_hour_text

pytestmark = pytest.mark.socket

# 24 messages and two injected 500s at 12 an hour: three quota hours, 1.5 s at this speed.
FAST = ["demo", "--messages", "24", "--tasks", "6", "--per-hour", "12", "--time-scale", "7200"]


def summary_value(out: str, name: str) -> str:
    match = re.search(rf"^  {name} +(.*)$", out, re.MULTILINE)
    assert match is not None, out
    return match.group(1)


def test_the_demo_delivers_every_message_exactly_once(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(FAST)
    out, err = capsys.readouterr()
    assert code == ExitCode.OK, out + err
    assert out.splitlines()[0].startswith("Desktop page: http://127.0.0.1:")
    assert "a quota hour lasts 0.5 s" in out
    assert summary_value(out, "delivered") == (
        "24 of 24, each exactly once (checked against the emulator's record)"
    )
    assert "faults injected: 1 x 429, 2 x 500, 4 x 503" in summary_value(out, "retried")
    assert summary_value(out, "429s seen").startswith("1 (1 injected with Retry-After, 0 from")
    waited = int(summary_value(out, "throttle waits").split()[0])
    assert waited > 0  # 26 counted requests against 12 an hour: most had to wait
    assert "per HTTP request (real time)" in summary_value(out, "latency")
    assert "of quota time (clock 7200x real time)" in summary_value(out, "elapsed")
    assert out.rstrip().endswith("Result: every message was delivered exactly once.")
    # Not a terminal: ten plain progress lines at most, never a carriage return.
    assert "24/24 delivered" in err
    assert len(err.splitlines()) <= 11
    assert "\r" not in err


def test_without_faults_nothing_is_retried(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--messages", "8", "--per-hour", "100", "--no-faults", "--window", "sliding"]
    assert main(argv) == ExitCode.OK
    out = capsys.readouterr().out
    assert summary_value(out, "retried") == "0 messages, 0 extra attempts (faults injected: none)"
    assert summary_value(out, "answers") == "8 x 200"
    assert "100 per hour, sliding window; 8 used in the current hour, 92 left" in out


def test_a_burst_that_runs_out_of_time_fails(capsys: pytest.CaptureFixture[str]) -> None:
    # The burst needs three quota hours: 1.5 s here, far more than 0.01 s.
    assert main([*FAST, "--timeout", "0.01"]) == ExitCode.FAILED
    out = capsys.readouterr().out
    assert "Result: FAILED: the burst did not finish within 0.01 s" in out
    assert "never arrived" in out


@pytest.fixture
def ctrl_c_at_the_first_quota_wait() -> Iterator[None]:
    class Handler(logging.Handler):
        pressed = False

        def emit(self, record: logging.LogRecord) -> None:
            if "throttling" in record.getMessage() and not self.pressed:
                self.pressed = True
                signal.raise_signal(signal.SIGINT)

    logger = logging.getLogger("hookapi")
    handler = Handler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@pytest.mark.usefixtures("ctrl_c_at_the_first_quota_wait")
def test_ctrl_c_stops_the_demo_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--messages", "30", "--per-hour", "12", "--time-scale", "1"]
    assert main(argv) == ExitCode.INTERRUPTED
    out, err = capsys.readouterr()
    assert "a quota hour lasts an hour" in out
    assert "hookapi demo: interrupted." in err
    assert "Result: FAILED: " in out
    assert "never arrived" in out


def test_find_problems() -> None:
    sent = ["a", "b", "c"]
    assert find_problems(sent, ["c", "a", "b"]) == []
    assert find_problems(sent, ["a", "a", "b", "zz"]) == [
        "1 message never arrived",
        "1 message arrived more than once",
        "1 unexpected message arrived",
    ]


def test_a_port_in_use_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == ExitCode.FAILED
    assert f"cannot listen on 127.0.0.1 port {port}" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_line_is_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*FAST, "--no-faults"]) == ExitCode.OK
    frames = terminal.getvalue().split("\r")
    assert frames[-1].startswith("[########################] 24/24 delivered  0 retried")
    assert frames[-1].endswith("\n")


def test_throttle_waits_count_every_message_held_back(capsys: pytest.CaptureFixture[str]) -> None:
    # 60 messages at 12 an hour from 20 tasks: all but the first hour's 12 wait for the quota.
    # A quota hour of half a real second: the first 12 all go within it even on a loaded
    # machine (at 0.1 s, a slow start let the burst straddle two hours, and fewer waited).
    argv = ["demo", "--messages", "60", "--tasks", "20", "--per-hour", "12", "--no-faults"]
    assert main([*argv, "--time-scale", "7200"]) == ExitCode.OK
    out = capsys.readouterr().out
    waited = int(summary_value(out, "throttle waits").split()[0])
    assert 48 <= waited <= 60


def test_a_huge_time_scale_keeps_the_summary_short(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--messages", "6", "--tasks", "2", "--time-scale", "1e9"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) < 300
    assert re.fullmatch(
        r"6 messages over [\d,]+ clock hours \(\d+ with any\), at most \d+ in one hour",
        summary_value(out, "per quota hour"),
    )


def test_per_hour_text_lists_a_day_and_summarises_more() -> None:
    assert per_hour_text({}) == "none"
    assert per_hour_text({0: 2, 2: 1}) == "2, 0, 1 (messages posted in each clock hour)"
    assert per_hour_text({0: 3, 9000: 1}) == (
        "4 messages over 9,001 clock hours (2 with any), at most 3 in one hour"
    )
