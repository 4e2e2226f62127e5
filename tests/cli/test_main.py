"""``main`` itself: help, version, usage errors, and what every command has in common."""

from __future__ import annotations

import math

import pytest

from hookapi import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    HookAPIError,
    InternalServerError,
    RateLimitError,
    __version__,
)
from hookapi.cli import main
from hookapi.cli._common import ExitCode, Progress, exit_code_for, percentile


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == ExitCode.OK
    assert capsys.readouterr().out == f"hookapi {__version__}\n"


def test_help_lists_the_commands_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    for word in ("demo", "send", "serve", "exit status", "130 interrupted"):
        assert word in out


@pytest.mark.parametrize("command", ["demo", "send", "serve"])
def test_each_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main([command, "--help"]) == ExitCode.OK
    assert "exit status" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["launch"],
        ["demo", "--messages", "-3"],
        ["demo", "--messages", "many"],
        ["serve", "--port", "http"],
        ["serve", "--fault-rate", "lots"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == ExitCode.USAGE
    assert "usage: hookapi" in capsys.readouterr().err


def test_every_error_class_has_an_exit_status() -> None:
    def status(cls: type[APIStatusError], code: int) -> APIStatusError:
        return cls("x", url="u", status_code=code)

    assert exit_code_for(status(InternalServerError, 500)) == ExitCode.SERVER_ERROR
    assert exit_code_for(status(APIStatusError, 409)) == ExitCode.BAD_REQUEST
    assert exit_code_for(status(RateLimitError, 429)) == ExitCode.RATE_LIMITED
    assert exit_code_for(APITimeoutError("x", url="u")) == ExitCode.TIMEOUT
    assert exit_code_for(APIConnectionError("x", url="u")) == ExitCode.CONNECTION
    assert exit_code_for(ClientClosedError("x")) == ExitCode.FAILED
    assert exit_code_for(HookAPIError("x")) == ExitCode.FAILED
    assert len({int(code) for code in ExitCode}) == len(ExitCode)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
    assert math.isnan(percentile([], 0.5))


class _Terminal:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_one_line_at_a_human_pace() -> None:
    now = [0.0]
    stream = _Terminal()
    progress = Progress(stream, total=4, label="sent", clock=lambda: now[0])  # type: ignore[arg-type]
    assert progress.is_tty
    progress.update(1, "a long detail")
    progress.update(2)  # too soon after the last redraw: skipped
    now[0] = 1.0
    progress.update(3)
    progress.update(4)  # the last one is always drawn
    progress.close()
    frames = stream.text.split("\r")[1:]
    assert frames[0] == "[######..................] 1/4 sent  a long detail"
    assert frames[1].startswith("[##################......] 3/4 sent ")
    # A shorter line blanks out what is left of the longer one before it.
    assert len(frames[1]) == len(frames[0])
    assert frames[2] == "[########################] 4/4 sent\n"


def test_a_ctrl_c_before_the_command_could_catch_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("hookapi.cli._send.run_send", interrupted)
    assert main(["send", "hi"]) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "hookapi send: interrupted.\n"
