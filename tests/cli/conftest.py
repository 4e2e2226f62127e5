"""Fixtures for the command line: an emulator in process, and the real console script.

In-process tests call ``main(argv, transport=...)`` with an emulator's in-process transport;
the hook URL then points at a loopback port nothing listens on, which only that transport
ever answers. Subprocess tests run the installed ``hookapi`` script against a served emulator.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hookapi.cli import main
from hookapi.emulator import Emulator, Hook

#: Where the browser test leaves its screenshot.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Nothing listens here: only the in-process transport answers requests to it.
NOWHERE = "http://127.0.0.1:9"


@dataclass(frozen=True, slots=True)
class Ran:
    """What one command did: its exit status and what it printed."""

    code: int
    out: str
    err: str


RunCLI = Callable[..., Ran]


def texts(emulator: Emulator) -> list[str]:
    """The text of every message the emulator received, in arrival order."""
    return [message.text for message in emulator.messages()]


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Emulator:
    """A fresh emulator; parametrize it indirectly with a dict of options to change them."""
    options = {"per_hour": 100, "per_day": 1000, **getattr(request, "param", {})}
    return Emulator(**options)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Ops")


@pytest.fixture
def hook_url(hook: Hook, monkeypatch: pytest.MonkeyPatch) -> str:
    """The hook URL, also set as HOOKAPI_URL."""
    url = hook.url_for(NOWHERE)
    monkeypatch.setenv("HOOKAPI_URL", url)
    return url


@pytest.fixture
def cli(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> RunCLI:
    """Run ``main(argv)`` against the emulator in process; ``stdin`` feeds standard input."""

    def run(
        *argv: str, stdin: str | None = None, transport: httpx.AsyncBaseTransport | None = None
    ) -> Ran:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        code = main(list(argv), transport=transport or emulator.transport())
        captured = capsys.readouterr()
        return Ran(int(code), captured.out, captured.err)

    return run


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was free a moment ago, so that connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the real console script -----------------------------------------------------------------


@pytest.fixture(scope="session")
def script() -> Path:
    """The installed ``hookapi`` console script, next to this interpreter."""
    path = Path(sys.executable).with_name("hookapi")
    if not path.exists():
        pytest.fail(f"The hookapi console script is not installed at {path}: pip install -e .")
    return path


def script_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this one without HOOKAPI_URL, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "HOOKAPI_URL"}
    env.update(extra)
    return env


def wait_for(condition: Callable[[], bool], *, timeout: float = 20.0, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout:g} s waiting for {what}.")
        time.sleep(0.05)


@dataclass(slots=True)
class Served:
    """A ``hookapi serve`` subprocess, listening."""

    process: subprocess.Popen[str]
    hook_url: str
    url_file: Path

    @property
    def base(self) -> str:
        return self.hook_url.rsplit("/", 2)[0]

    def stop(self) -> tuple[int, str, str]:
        """Press Ctrl-C; return the exit status and everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=20)
        return self.process.returncode, out, err


def start_serve(script: Path, tmp: Path, *options: str) -> Served:
    """Start ``hookapi serve`` on a free port and wait until it listens."""
    url_file = tmp / "hook-url"
    command = [str(script), "serve", "--port", "0", "--url-file", str(url_file), *options]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env()
    )

    def listening() -> bool:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"hookapi serve exited with {process.returncode}:\n{out}\n{err}")
        return url_file.exists() and url_file.read_text().strip() != ""

    try:
        wait_for(listening, what="hookapi serve to listen")
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return Served(process, url_file.read_text().strip(), url_file)


@pytest.fixture
def served(script: Path, tmp_path: Path) -> Iterator[Served]:
    """``hookapi serve`` in a subprocess; stopped with Ctrl-C, which must end it cleanly."""
    server = start_serve(script, tmp_path, "--desktop", "Ops")
    try:
        yield server
    finally:
        code, out, _ = server.stop()
    assert code == 0, out
    assert "Stopped." in out


def run_script(script: Path, *argv: str, stdin: str = "", **env: str) -> Ran:
    """Run the console script to completion."""
    done = subprocess.run(
        [str(script), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=script_env(**env),
        timeout=120,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def lines_of(text: str) -> Sequence[str]:
    return [line for line in text.splitlines() if line.strip()]
