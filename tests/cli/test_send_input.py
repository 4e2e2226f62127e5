"""``hookapi send``: ``-`` reads the message from standard input, piped input gets a hint, and
errors name the command line's own options."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from hookapi.cli._common import ExitCode
from hookapi.emulator import Emulator, Hook

from .conftest import RunCLI, script_env, texts


def test_dash_posts_all_of_standard_input_as_one_message(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    ran = cli("send", "-", stdin="Deploy finished\nall green\n")
    assert ran.code == ExitCode.OK, ran.err
    assert texts(emulator) == ["Deploy finished\nall green"]
    assert ran.out.startswith("Sent: 200 OK in ")


def test_dash_with_empty_input_is_invalid_input(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    ran = cli("send", "-", stdin="\n")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "The message must not be empty" in ran.err
    assert texts(emulator) == []


def test_dash_with_input_that_is_not_utf8_is_invalid_input(
    cli: RunCLI, emulator: Emulator, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9\n")))
    ran = cli("send", "-")
    assert ran.code == ExitCode.INVALID_INPUT
    assert ran.err == "hookapi send: error: standard input is not UTF-8 text.\n"
    assert texts(emulator) == []


def test_dash_with_stdin_is_a_usage_error(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    ran = cli("send", "--stdin", "-", stdin="a\n")
    assert ran.code == ExitCode.USAGE
    assert texts(emulator) == []


def test_plain_http_names_the_command_line_option_and_keeps_the_port(
    cli: RunCLI, emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", hook.url_for("http://chat.internal:8080"))
    ran = cli("send", "hi")
    assert ran.code == ExitCode.INVALID_INPUT
    assert ran.err == (
        "hookapi send: error: the hook URL is plain http to http://chat.internal:8080, a host "
        "that is not loopback: the secret would cross the network in clear. Use https, or pass "
        "--allow-insecure-http if you really mean it.\n"
    )
    assert "allow_insecure_http=True" not in ran.err
    assert hook.secret not in ran.err
    # And the option it names lets the message through.
    assert cli("send", "--allow-insecure-http", "hi").code == ExitCode.OK
    assert texts(emulator) == ["hi"]


def _send_without_a_message(script: Path, stdin: int | str) -> subprocess.CompletedProcess[str]:
    env = script_env(HOOKAPI_URL="http://127.0.0.1:9/hook/secret")
    if isinstance(stdin, str):
        return subprocess.run(
            [str(script), "send"], input=stdin, capture_output=True, text=True, env=env, check=False
        )
    return subprocess.run(
        [str(script), "send"], stdin=stdin, capture_output=True, text=True, env=env, check=False
    )


def test_piped_input_without_stdin_gets_a_hint(script: Path) -> None:
    done = _send_without_a_message(script, "x\n")
    assert done.returncode == ExitCode.USAGE
    assert done.stderr == (
        "hookapi send: error: give either MESSAGE or --stdin. Standard input is piped: --stdin "
        "posts each of its lines as a message, and '-' posts all of it as one message.\n"
    )


def test_no_hint_when_standard_input_is_not_piped(script: Path) -> None:
    done = _send_without_a_message(script, subprocess.DEVNULL)
    assert done.returncode == ExitCode.USAGE
    assert done.stderr == "hookapi send: error: give either MESSAGE or --stdin.\n"
