"""A real ``redis-server`` on a free loopback port, for the tests of the shared quota.

The server keeps nothing on disk (``--save '' --appendonly no``) unless given an
``appendfsync`` policy (then it keeps an append-only file), and lives in a throwaway
directory; it can be stopped and started again on the same port, which is how the tests take
Redis away from running clients and give it back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

REQUIRE_ENV = "HOOKAPI_REQUIRE_REDIS"
_READY = "Ready to accept connections"
_START_TIMEOUT = 20.0


def redis_server_binary() -> str:
    """The ``redis-server`` binary, or skip (fail when ``HOOKAPI_REQUIRE_REDIS=1``)."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    if found is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
        pytest.skip(reason)
    return found


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ping(port: int, *, timeout: float = 5.0) -> bool:
    """Whether a Redis server answers PING on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process that a test can stop and start again on the same port.

    Args:
        binary: The ``redis-server`` executable.
        directory: Its working directory (nothing is saved there).
    """

    def __init__(self, binary: str, directory: Path, *, appendfsync: str | None = None) -> None:
        self.binary = binary
        self.directory = directory
        # None: nothing on disk; "always" or "everysec": an append-only file in `directory`.
        self.appendfsync = appendfsync
        self.port = free_port()
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:{port}/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.running:
            return
        process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(
                    ["--appendonly", "no"]
                    if self.appendfsync is None
                    else ["--appendonly", "yes", "--appendfsync", self.appendfsync]
                ),
                "--dir",
                str(self.directory),
                "--logfile",
                "",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._process = process
        assert process.stdout is not None
        said: list[str] = []
        # The server says when it is ready: read its log up to that line (no polling), then
        # keep draining it in the background so that a full pipe can never stall it.
        timer = threading.Timer(_START_TIMEOUT, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                said.append(line)
                if _READY in line:
                    break
        finally:
            timer.cancel()
        if process.poll() is not None or not ping(self.port):
            self.stop()
            raise RuntimeError("redis-server did not start:\n" + "".join(said[-20:]))
        self._drain = threading.Thread(target=process.stdout.read, daemon=True)
        self._drain.start()

    def stop(self) -> None:
        """Stop the server (its data is gone); safe to call when it is not running."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._drain is not None:
            self._drain.join(5)
            self._drain = None
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        """Kill the server with SIGKILL: no shutdown, so only what it had written survives."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self.stop()

    def restart(self) -> None:
        """Stop the server, then start it again on the same port (empty, without an AOF)."""
        self.stop()
        self.start()
