"""served_hook_url and serve_in_thread: a hook URL that answers any loop, thread or process."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from hookapi import HookClient
from hookapi.emulator import Emulator, Hook
from hookapi.testing import assert_posted, serve_in_thread

pytestmark = pytest.mark.socket


def test_served_hook_url_answers_a_client_built_from_the_environment(
    served_hook_url: str, hook_emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert served_hook_url.startswith("http://127.0.0.1:")
    assert served_hook_url.endswith(f"/{hook.id}/{hook.secret}")
    monkeypatch.setenv("HOOKAPI_URL", served_hook_url)
    with HookClient.from_env() as client:
        client.post_message("over a real socket")
    assert_posted(hook_emulator, hook, ["over a real socket"])


def test_served_hook_url_answers_another_process(
    served_hook_url: str, hook_emulator: Emulator, hook: Hook
) -> None:
    code = "import sys, httpx; print(httpx.post(sys.argv[1], json={'message': 'hi'}).status_code)"
    done = subprocess.run(
        [sys.executable, "-c", code, f"{served_hook_url}/message"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "200"
    assert_posted(hook_emulator, hook, ["hi"])


def test_the_server_thread_ends_with_the_block() -> None:
    emulator = Emulator()
    with serve_in_thread(emulator):
        names = [t.name for t in threading.enumerate()]
        assert "hookapi-emulator" in names
    assert "hookapi-emulator" not in [t.name for t in threading.enumerate()]


def test_a_server_that_cannot_listen_raises_in_the_callers_thread() -> None:
    with pytest.raises(OSError), serve_in_thread(Emulator(), host="192.0.2.1"):
        pass  # never reached: nobody here owns that documentation-only address
