"""``hookapi serve`` in process: it listens, announces, serves the page, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hookapi.cli import main
from hookapi.cli._common import ExitCode
from hookapi.cli._serve import is_loopback_host

from .conftest import wait_for

pytestmark = pytest.mark.socket


class _Visitor(threading.Thread):
    """Waits for the server's URL file, posts and reads the page, then presses Ctrl-C."""

    def __init__(self, url_file: Path, finished: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url_file = url_file
        self.finished = finished
        self.answers: list[httpx.Response] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for(lambda: self.finished.is_set() or self.url_file.exists(), what="the URL file")
            if self.finished.is_set():
                return
            url = self.url_file.read_text().strip()
            base = url.rsplit("/", 2)[0]
            with httpx.Client(timeout=10) as http:
                self.answers.append(http.post(f"{url}/message", json={"message": "<b>hi</b>"}))
                self.answers.append(http.get(f"{base}/"))
                self.answers.append(http.get(f"{base}/state.json"))
        except BaseException as exc:  # reported by the test, in its own thread
            self.error = exc
        finally:
            if not self.finished.is_set():
                os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def finished() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_serve_announces_serves_the_page_and_stops_on_ctrl_c(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished: threading.Event
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("ab" * 32 + "\n")
    secret_file.chmod(0o600)
    url_file = tmp_path / "url"
    visitor = _Visitor(url_file, finished)
    visitor.start()
    try:
        code = main(
            [
                "serve",
                "--port",
                "0",
                "--url-file",
                str(url_file),
                "--desktop",
                "Ops",
                "--desktop",
                "Releases",
                "--hook-id",
                "my-hook",
                "--secret-file",
                str(secret_file),
                "--per-hour",
                "50",
                "--window",
                "sliding",
                "--fault-rate",
                "0",
                "--latency",
                "0",
            ]
        )
    finally:
        finished.set()
        visitor.join(10)
    out, err = capsys.readouterr()
    assert visitor.error is None
    assert code == ExitCode.OK
    post, page, state = visitor.answers
    assert (post.status_code, post.text) == (200, "ok")
    assert "&lt;b&gt;hi&lt;/b&gt;" in page.text
    assert "ab" * 32 not in page.text + state.text
    assert [d["name"] for d in state.json()["desktops"]] == ["Ops", "Releases"]
    assert state.json()["window"] == "sliding"
    match = re.search(r"Hook URL for Desktop 'Ops': (http://127\.0\.0\.1:\d+/my-hook/(ab)+)\n", out)
    assert match is not None
    assert url_file.read_text().strip() == match.group(1)
    assert url_file.stat().st_mode & 0o777 == 0o600
    assert "Desktop page: http://127.0.0.1:" in out
    assert 'curl -X POST -H "Content-Type: application/json" -d \'{"message": "Hello"}\'' in out
    assert out.endswith("Stopped. The emulator received 1 message.\n")
    assert err == ""


def test_a_port_in_use_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port)])
    assert code == ExitCode.FAILED
    assert f"cannot listen on 127.0.0.1 port {port}" in capsys.readouterr().err


def test_an_unwritable_url_file_stops_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--port", "0", "--url-file", str(tmp_path / "no" / "such" / "dir")])
    assert code == ExitCode.FAILED
    assert "cannot write the hook URL file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--hook-id", "a/b"], ExitCode.USAGE, "id must be a non-empty str"),
        (["--secret-file", "/no/such/file"], ExitCode.INVALID_INPUT, "cannot read the secret"),
        (["--fault-rate", "2"], ExitCode.USAGE, "must be from 0 to 1"),
        (["--port", "70000"], ExitCode.USAGE, "is not a port number"),
        (["--window", "weekly"], ExitCode.USAGE, "invalid choice"),
    ],
)
def test_bad_options(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: ExitCode, message: str
) -> None:
    assert main(["serve", *argv]) == code
    assert message in capsys.readouterr().err


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1")
    assert is_loopback_host("localhost")
    assert is_loopback_host("::1")
    assert not is_loopback_host("0.0.0.0")
