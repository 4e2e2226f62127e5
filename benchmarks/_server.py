"""The benchmark server: nginx on a free loopback port, from the config kept in this folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CONFIG = Path(__file__).with_name("nginx.conf")
HOST = "127.0.0.1"


def find_nginx() -> str | None:
    """The nginx binary on PATH, or Debian's, or ``None``."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, *, timeout: float) -> None:
    give_up = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.02)


def _stop(master: int, *, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(master, signal.SIGQUIT)  # graceful: finish open requests, then exit
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            os.kill(master, 0)
            time.sleep(0.05)
        os.kill(master, signal.SIGTERM)


@contextlib.contextmanager
def nginx(binary: str | None = None) -> Iterator[str]:
    """Run nginx with ``nginx.conf`` on a free loopback port; yield ``http://127.0.0.1:PORT``.

    nginx daemonises; its master's pid (from the pid file in a scratch directory) is the only
    process this stops.
    """
    binary = binary or find_nginx()
    if binary is None:
        raise RuntimeError("nginx is not installed (on Debian: apt-get install nginx).")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hookapi-bench-nginx-") as prefix:
        os.chmod(prefix, 0o755)  # the worker may run as another user
        text = CONFIG.read_text().replace("@PREFIX@", prefix).replace("@PORT@", str(port))
        conf = Path(prefix, "nginx.conf")
        conf.write_text(text)
        error_log = Path(prefix, "error.log")
        subprocess.run(
            [binary, "-p", prefix, "-c", str(conf), "-e", str(error_log), "-q"], check=True
        )
        pid_file = Path(prefix, "nginx.pid")
        master = 0
        try:
            give_up = time.monotonic() + 5.0
            while not pid_file.exists() and time.monotonic() < give_up:
                time.sleep(0.02)
            master = int(pid_file.read_text().split()[0])
            _wait_listening(port, timeout=5.0)
            yield f"http://{HOST}:{port}"
        finally:
            if master:
                _stop(master)
