"""The desktop page in a real browser: headless Chromium renders a ``<script>`` message as text."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ARTIFACTS, Served, run_script

pytestmark = [pytest.mark.browser, pytest.mark.socket]

SCRIPT_MESSAGE = "<script>alert(1)</script>"
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed (apt-get install chromium fonts-dejavu-core)"
        if os.environ.get("HOOKAPI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and HOOKAPI_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    return found


def browse(chromium: str, profile: Path, *options: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [chromium, *_FLAGS, f"--user-data-dir={profile}", *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_a_script_message_renders_as_text(
    chromium: str, served: Served, script: Path, tmp_path: Path
) -> None:
    secret = served.hook_url.rsplit("/", 1)[1]
    for text in ("Deploy finished", SCRIPT_MESSAGE):
        ran = run_script(script, "send", text, HOOKAPI_URL=served.hook_url)
        assert ran.code == 0, ran.err
    page = f"{served.base}/"

    dom = browse(chromium, tmp_path / "profile", "--dump-dom", page).stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert SCRIPT_MESSAGE not in dom
    assert dom.count("<script") == 0
    assert "Deploy finished" in dom
    assert "Ops" in dom
    assert secret not in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "desktop-page.png"
    shot.unlink(missing_ok=True)
    browse(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1200,800",
        "--hide-scrollbars",
        page,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # a page with text on it, not a blank frame
