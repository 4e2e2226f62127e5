"""``hookapi serve`` in process: it listens, announces, serves the page, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from hookapi.cli import main
from hookapi.cli._common import CommandError, ExitCode
from hookapi.cli._main import build_parser
from hookapi.cli._serve import _announce, is_loopback_host, write_url_file
from hookapi.emulator import Emulator

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
    # The commands to copy name the file, never the URL: shell history keeps command lines.
    examples = [line for line in out.splitlines() if line.startswith("  ")]
    assert examples == [
        f"  HOOKAPI_URL_FILE={url_file} hookapi send 'Hello'",
        '  curl -X POST -H "Content-Type: application/json" -d \'{"message": "Hello"}\' '
        f'--max-time 10 "$(cat {url_file})/message"',
    ]
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


def test_without_a_url_file_the_hint_still_keeps_the_secret_off_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator = Emulator()
    hook = emulator.create_hook("Ops")
    args = build_parser().parse_args(["serve"])
    _announce(args, emulator, [hook], SimpleNamespace(url="http://127.0.0.1:8000"))  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.count(hook.secret) == 1  # on its "Hook URL for Desktop" line only
    (line,) = [line for line in out.splitlines() if hook.secret in line]
    assert line.startswith("Hook URL for Desktop 'Ops': ")
    assert "start with --url-file PATH" in out
    assert "  HOOKAPI_URL_FILE=PATH hookapi send 'Hello'\n" in out


# -- the URL file ----------------------------------------------------------------------------

URL = "http://127.0.0.1:8000/hook-1/" + "ab" * 32


def test_the_url_file_is_new_and_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "url"
    old = os.umask(0o277)  # a umask that takes the owner's write bit: the mode stays 0600
    try:
        write_url_file(str(path), URL)
    finally:
        os.umask(old)
    assert path.read_text() == URL + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["url"]  # no temporary file left


def test_an_existing_url_file_is_replaced_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text("the old content\n")
    path.chmod(0o644)
    other_name = tmp_path / "hard-link"
    os.link(path, other_name)  # another name for the old file
    write_url_file(str(path), URL)
    assert path.read_text() == URL + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Written in place, the old file (and so its other name) would now hold the URL.
    assert other_name.read_text() == "the old content\n"
    assert not path.samefile(other_name)


def test_a_symbolic_link_is_refused_and_its_target_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("someone else's file\n")
    target.chmod(0o644)
    link = tmp_path / "url"
    link.symlink_to(target)
    code = main(["serve", "--port", "0", "--url-file", str(link)])
    assert code == ExitCode.FAILED
    assert f"the hook URL file {link} is a symbolic link" in capsys.readouterr().err
    assert target.read_text() == "someone else's file\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert link.is_symlink()
    # A dangling link is refused too: following it would create the file it points at.
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(CommandError, match="is a symbolic link"):
        write_url_file(str(dangling), URL)
    assert not (tmp_path / "created-through-the-link").exists()


def test_a_url_file_that_is_a_directory_is_refused_and_cleaned_up(tmp_path: Path) -> None:
    (tmp_path / "url").mkdir()
    with pytest.raises(CommandError, match="cannot write the hook URL file"):
        write_url_file(str(tmp_path / "url"), URL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["url"]
