"""The real ``hookapi`` console script in subprocesses: serve, curl, send, demo, Ctrl-C."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hookapi.cli._common import ExitCode

from .conftest import Served, run_script, script_env, start_serve, wait_for

pytestmark = pytest.mark.socket


def posted(served: Served) -> list[str]:
    state = httpx.get(f"{served.base}/state.json", timeout=10).json()
    return [m["text"] for desktop in state["desktops"] for m in desktop["messages"]]


def test_serve_answers_the_services_own_curl_example(served: Served) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (Debian: apt-get install curl)")
    command = (
        f'{curl} -X POST -H "Content-Type: application/json" -d \'{{"message": "Hello"}}\' '
        f"--max-time 10 {served.hook_url}/message"
    )
    done = subprocess.run(
        command,
        shell=True,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "ok")
    assert posted(served) == ["Hello"]


def test_send_through_the_environment_and_a_url_file(served: Served, script: Path) -> None:
    ran = run_script(script, "send", "from the env", HOOKAPI_URL=served.hook_url)
    assert ran.code == ExitCode.OK, ran.err
    assert re.fullmatch(
        r"Sent: 200 OK in \d+\.\d\d s, 1 attempt\. Quota left: 999 \(1000 per hour, 10000 per "
        r"day\)\.\n",
        ran.out,
    )
    ran = run_script(
        script, "send", "--stdin", "--url-file", str(served.url_file), stdin="one\ntwo\n"
    )
    assert ran.code == ExitCode.OK, ran.err
    assert ran.out.startswith("Sent 2 messages in ")
    ran = run_script(script, "send", "--json", "last", HOOKAPI_URL=served.hook_url)
    assert json.loads(ran.out)["rate_limit"]["remaining"] == 996
    assert posted(served) == ["from the env", "one", "two", "last"]


def test_send_with_a_wrong_secret_exits_4(served: Served, script: Path) -> None:
    wrong = served.hook_url[:-64] + "0" * 64
    ran = run_script(script, "send", "hi", HOOKAPI_URL=wrong)
    assert ran.code == ExitCode.AUTHENTICATION
    assert "401 Unauthorized" in ran.err
    assert "0" * 64 not in ran.err


def test_send_without_a_url_exits_3(script: Path) -> None:
    ran = run_script(script, "send", "hi")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "set HOOKAPI_URL" in ran.err


def test_ctrl_c_stops_send_and_says_what_was_not_sent(script: Path, tmp_path: Path) -> None:
    # Each answer takes 0.2 s, so Ctrl-C lands while lines are still waiting to be sent.
    served = start_serve(script, tmp_path, "--latency", "0.2")
    try:
        lines = tmp_path / "lines.txt"
        lines.write_text("".join(f"line {n}\n" for n in range(1, 21)))
        with lines.open() as stdin:
            sender = subprocess.Popen(
                [str(script), "send", "--stdin", "--url-file", str(served.url_file)],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=script_env(),
            )
            wait_for(lambda: len(posted(served)) >= 2, what="two lines to arrive")
            sender.send_signal(signal.SIGINT)
            out, err = sender.communicate(timeout=20)
        arrived = posted(served)
    finally:
        code, _, _ = served.stop()
    assert code == 0
    assert sender.returncode == ExitCode.INTERRUPTED
    match = re.search(
        r"hookapi send: interrupted: sent (\d+) of 20 messages \((line 1|lines 1-\d+)\);", err
    )
    assert match is not None, err
    sent = int(match.group(1))
    if "may or may not have been posted" in err:
        # Ctrl-C came while a line was on the wire; the emulator posts before its latency.
        assert f"line {sent + 1} may or may not have been posted" in err
        assert f"lines {sent + 2}-20 were not sent." in err
        assert arrived == [f"line {n}" for n in range(1, sent + 2)]
    else:  # between two lines
        assert f"lines {sent + 1}-20 were not sent." in err
        assert arrived == [f"line {n}" for n in range(1, sent + 1)]
    assert out == ""


def test_the_demo_runs_to_completion(script: Path) -> None:
    # How long it takes is the demo's own "elapsed" line and the benchmarks' business; here,
    # that its quota hours pass on the scaled clock rather than in real hours (run_script's
    # timeout would end a demo that waited for real ones).
    ran = run_script(script, "demo")
    assert ran.code == ExitCode.OK, ran.out + ran.err
    assert "Result: every message was delivered exactly once." in ran.out
    assert "100 of 100, each exactly once" in ran.out


def test_demo_keep_serving_stops_on_ctrl_c(script: Path) -> None:
    argv = ["demo", "--keep-serving", "--messages", "10", "--time-scale", "36000"]
    process = subprocess.Popen(
        [str(script), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while not seen or not seen[-1].startswith("Still serving"):
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the demo did not keep serving: {''.join(seen)}")
        seen.append(line)
    page = seen[-1].split()[2]
    assert "Demo message 010 of 10" in httpx.get(page, timeout=10).text
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == ExitCode.OK
    assert out == ""


def test_python_dash_m_runs_the_same_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hookapi", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=script_env(),
    )
    assert done.returncode == 0
    assert done.stdout.startswith("hookapi ")
