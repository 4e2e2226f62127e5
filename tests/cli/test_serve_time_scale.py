"""``hookapi serve --time-scale``: a served emulator whose quota hours pass in real seconds."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookapi import HookClient, RateLimitError, RetryPolicy
from hookapi.cli import _serve, main
from hookapi.cli._common import ExitCode
from hookapi.cli._main import MAX_DEMO_TIME_SCALE, build_parser
from hookapi.emulator import Emulator, LoopClock, ScaledClock
from hookapi.emulator._clock import MAX_SCALE
from hookapi.testing import serve_in_thread

from .conftest import wait_for

pytestmark = pytest.mark.socket

HALF_MINUTE_TO_ELEVEN = datetime(2026, 12, 5, 10, 59, 30, tzinfo=UTC)


class FakeTimer:
    """The real seconds the served emulator's scaled clock multiplies, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def timer(monkeypatch: pytest.MonkeyPatch) -> FakeTimer:
    """``serve``'s scaled clock, on a fake timer and starting at 10:59:30 UTC."""
    timer = FakeTimer()

    def scaled(scale: float) -> ScaledClock:
        return ScaledClock(scale, start=HALF_MINUTE_TO_ELEVEN, timer=timer)

    monkeypatch.setattr(_serve, "ScaledClock", scaled)
    return timer


class _Client(threading.Thread):
    """Spends the served hook's quota, moves the timer past 11:00, posts again, then Ctrl-C."""

    def __init__(self, url_file: Path, timer: FakeTimer, finished: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url_file = url_file
        self.timer = timer
        self.finished = finished
        self.answers: list[httpx.Response] = []
        self.state: dict[str, Any] = {}
        self.page = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for(lambda: self.finished.is_set() or self.url_file.exists(), what="the URL file")
            if self.finished.is_set():
                return
            url = self.url_file.read_text().strip()
            with httpx.Client(timeout=10) as http:

                def post(text: str) -> None:
                    self.answers.append(http.post(f"{url}/message", json={"message": text}))

                post("a")
                post("b")
                post("refused at 10:59:30")
                self.timer.now += 29 / 3600  # 29 s of the emulator's clock: 10:59:59
                post("refused at 10:59:59")
                self.timer.now += 1 / 3600  # one more: 11:00:00, a new hour
                post("c")
                base = url.rsplit("/", 2)[0]
                self.state = http.get(f"{base}/state.json").json()
                self.page = http.get(f"{base}/").text
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


def test_a_served_quota_hour_passes_in_a_scaled_second(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    timer: FakeTimer,
    finished: threading.Event,
) -> None:
    url_file = tmp_path / "url"
    client = _Client(url_file, timer, finished)
    client.start()
    argv = ["--port", "0", "--url-file", str(url_file), "--per-hour", "2", "--time-scale", "3600"]
    try:
        code = main(["serve", *argv])
    finally:
        finished.set()
        client.join(10)
    out = capsys.readouterr().out
    assert client.error is None
    assert code == ExitCode.OK
    statuses = [answer.status_code for answer in client.answers]
    assert statuses == [200, 200, 429, 429, 200]
    # Retry-After counts the emulator's seconds to 11:00 UTC, the end of its fixed hour.
    assert [answer.headers.get("retry-after") for answer in client.answers[2:4]] == ["30", "1"]
    assert client.answers[4].headers["x-rate-limit-used"] == "1"
    (desktop,) = client.state["desktops"]
    assert [(m["text"], m["received_at"]) for m in desktop["messages"]] == [
        ("a", "2026-12-05T10:59:30+00:00"),
        ("b", "2026-12-05T10:59:30+00:00"),
        ("c", "2026-12-05T11:00:00+00:00"),
    ]
    assert "runs 3600 times faster than real time: a quota hour lasts 1 s" in out
    assert "a quota hour lasts 1 s" in client.page
    assert (
        '<time datetime="2026-12-05T11:00:00+00:00">2026-12-05 11:00:00 UTC</time>' in client.page
    )


def test_without_a_time_scale_the_emulator_runs_on_the_loop_clock() -> None:
    emulator, _ = _serve._emulator(build_parser().parse_args(["serve"]))
    assert isinstance(emulator.clock, LoopClock)
    emulator, _ = _serve._emulator(build_parser().parse_args(["serve", "--time-scale", "60"]))
    assert isinstance(emulator.clock, ScaledClock)
    assert emulator.clock.scale == 60.0


def test_the_page_says_how_fast_the_clock_runs() -> None:
    assert "a quota hour lasts 5 s" in _serve._clock_note(720)
    assert "still waits real seconds" in _serve._clock_note(720)
    assert _serve._clock_note(None) == _serve._clock_note(1) == ""


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "inf", "86401", "1e300", "fast"])
def test_a_time_scale_must_be_finite_above_0_and_at_most_86400(
    capsys: pytest.CaptureFixture[str], scale: str
) -> None:
    assert main(["serve", "--time-scale", scale]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"argument --time-scale: {scale!r}" in err
    assert "must be a number above 0 and at most 86400" in err or "is not a number" in err


def test_the_demo_time_scale_is_bounded_by_the_scaled_clock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--time-scale", "1e10"]) == ExitCode.USAGE
    assert "must be a number above 0 and at most 1e+09" in capsys.readouterr().err


def test_the_demo_limit_is_the_scaled_clocks() -> None:
    assert MAX_DEMO_TIME_SCALE == MAX_SCALE


def test_a_real_time_client_still_counts_the_quota_in_real_seconds() -> None:
    # The limitation docs/emulator.md describes: the SDK client keeps its own count of the
    # quota on its own (real) clock, so a sped-up emulator does not speed it up.
    timer = FakeTimer()
    clock = ScaledClock(3600, start=HALF_MINUTE_TO_ELEVEN, timer=timer)
    emulator = Emulator(per_hour=2, per_day=100, clock=clock)
    hook = emulator.create_hook()
    with serve_in_thread(emulator) as server:
        url = hook.url_for(server.url)
        with HookClient.from_url(url, retry=RetryPolicy(deadline=5)) as client:
            client.post_message("a")
            client.post_message("b")
            timer.now += 30 / 3600  # 11:00 on the emulator's clock: its new hour has begun
            with pytest.raises(RateLimitError) as refused:
                client.post_message("c")
        answer = httpx.post(f"{url}/message", json={"message": "d"}, timeout=10)
    assert refused.value.local  # held back by the client, never sent
    assert refused.value.retry_after is not None
    assert refused.value.retry_after > 3000  # real seconds, by the client's count
    assert answer.status_code == 200  # while the emulator itself has room again
