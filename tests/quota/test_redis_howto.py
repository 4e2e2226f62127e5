"""The how-to "Several processes, one hook" runs as written: two processes, one Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from hookapi.cli._stage import BackgroundServer
from hookapi.emulator import Emulator

from .redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.socket]

HOWTO = Path(__file__).resolve().parents[2] / "docs" / "howto.md"


def howto_code() -> str:
    text = HOWTO.read_text()
    section = text.split("## Several processes, one hook", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


def test_the_howto_runs_in_two_processes(redis_server: RedisServer, tmp_path: Path) -> None:
    script = tmp_path / "post.py"
    script.write_text(howto_code())
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Deploys")
    background = BackgroundServer(emulator.app, host="127.0.0.1", port=0)
    server = background.start()
    env = {**os.environ, "HOOKAPI_URL": hook.url_for(server.url), "REDIS_URL": redis_server.url}
    try:
        runs = [
            subprocess.Popen(
                [sys.executable, str(script)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=60) for run in runs]
    finally:
        background.stop()
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert out.strip() == "200"
    texts = sorted(message.text for message in emulator.messages(hook))
    assert texts == sorted(f"Deploy finished on worker {run.pid}" for run in runs)
    # Both went through the one quota in Redis, under the hook's tag, each key with a TTL.
    with redis.Redis.from_url(redis_server.url) as raw:
        keys = [key.decode() for key in raw.keys(f"hookapi:{{{hook.id}}}:*")]
        assert keys
        assert all(raw.pttl(key) > 0 for key in keys)
        state = raw.hgetall(f"hookapi:{{{hook.id}}}:" + keys[0].split(":")[2] + ":state")
    assert int(float(state[b"settled"])) == 2
    assert hook.secret not in repr(keys) + repr(state)
