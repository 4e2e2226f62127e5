"""An emulator served over a real loopback socket from a thread of its own.

The in-process transport reaches the emulator only from a client built with it. Code under test
that builds its own client from ``HOOKAPI_URL`` (an app's lifespan under Starlette's
``TestClient``, a subprocess, the sync client) needs a URL that really answers: this serves the
emulator on ``127.0.0.1`` on a loop in a daemon thread, so it answers whatever loop, thread or
process calls it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..emulator import Emulator, Server

__all__ = ["serve_in_thread"]


@contextmanager
def serve_in_thread(emulator: Emulator, *, host: str = "127.0.0.1") -> Iterator[Server]:
    """Serve ``emulator`` over HTTP on a free port of ``host`` until the ``with`` block ends.

    The emulator then lives in the server's thread: it reads time from that thread's event
    loop, so reach it through the socket only (not also in process, through
    :meth:`~hookapi.emulator.Emulator.transport`). Its
    :meth:`~hookapi.emulator.Emulator.messages` and
    :meth:`~hookapi.emulator.Emulator.fail_next` may be called from the test's thread.

    Example:
        >>> import httpx
        >>> emulator = Emulator()
        >>> hook = emulator.create_hook()
        >>> with serve_in_thread(emulator) as server:
        ...     answer = httpx.post(f"{hook.url_for(server.url)}/message", json={"message": "hi"})
        >>> answer.status_code, [message.text for message in emulator.messages(hook)]
        (200, ['hi'])
    """
    handoff: queue.SimpleQueue[Server | BaseException] = queue.SimpleQueue()

    def serve() -> None:
        try:
            emulator.run(host, 0, on_ready=handoff.put)
        except BaseException as exc:  # handed to the caller's thread
            handoff.put(exc)

    thread = threading.Thread(target=serve, name="hookapi-emulator", daemon=True)
    thread.start()
    server = handoff.get()
    if isinstance(server, BaseException):
        thread.join()
        raise server
    try:
        yield server
    finally:
        server.stop()
        thread.join()
