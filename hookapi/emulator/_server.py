"""A small HTTP/1.1 server for the emulator's ASGI app: h11 for the protocol, anyio for I/O.

It runs on asyncio and trio alike, needs nothing beyond what httpx already brings, keeps
connections alive, reads Content-Length and chunked bodies, and can really drop a connection
when the app asks it to (see :data:`DROP_EXTENSION`). It never logs a request target: that is
where the hook secret travels.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import unquote

import anyio
import anyio.from_thread
import anyio.lowlevel
import h11
from anyio.abc import SocketAttribute, SocketListener, SocketStream
from anyio.streams.stapled import MultiListener

from ._app import DROP_EXTENSION, ASGIApp, ConnectionDropped, Message

__all__ = ["Server", "run_blocking", "serve_app"]

logger = logging.getLogger("hookapi.emulator")

_MAX_HEAD: Final = 16 * 1024
_READ_SIZE: Final = 64 * 1024
_BROKEN: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_FAILED: Final = h11.Response(
    status_code=500,
    headers=[
        (b"content-type", b"text/plain"),
        (b"content-length", b"0"),
        (b"connection", b"close"),
    ],
)


class Server:
    """A served emulator: where it listens, and a way to stop it from any thread.

    :meth:`Emulator.serve` and :meth:`Emulator.run` make it, inside the event loop that serves
    (it holds that loop's token, so that :meth:`stop` can reach the loop from another thread).

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the one picked by the system when asked for port 0).
    """

    def __init__(self, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        self._thread = threading.get_ident()

    @property
    def url(self) -> str:
        """The base URL to build hook URLs on, such as ``http://127.0.0.1:8000``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Server url={self.url!r}>"

    def stop(self) -> None:
        """Stop accepting and close every connection; safe to call from any thread, and twice."""
        if threading.get_ident() == self._thread:
            self._scope.cancel()
            return
        # A loop that has finished took the server with it.
        with contextlib.suppress(anyio.RunFinishedError):
            anyio.from_thread.run_sync(self._scope.cancel, token=self._token)

    async def wait_stopped(self) -> None:
        """Wait until the server has stopped serving."""
        await self._stopped.wait()

    async def _serve(self, listener: MultiListener[SocketStream], app: ASGIApp) -> None:
        # Our own accept loop: a connection accepted just as the server stops may be cancelled
        # before its handler starts, so every accepted stream is tracked and closed here.
        streams: set[SocketStream] = set()

        async def handle(stream: SocketStream) -> None:
            try:
                await _Connection(app, stream).run()
            finally:
                streams.discard(stream)

        async def accept(one: anyio.abc.Listener[SocketStream], tasks: anyio.abc.TaskGroup) -> None:
            assert isinstance(one, SocketListener)  # create_tcp_listener's are
            while True:
                stream = await _accept(one)
                streams.add(stream)
                tasks.start_soon(handle, stream)

        try:
            with self._scope:
                async with anyio.create_task_group() as tasks:
                    for one in listener.listeners:
                        tasks.start_soon(accept, one, tasks)
        finally:
            with anyio.CancelScope(shield=True):
                for stream in list(streams):
                    await stream.aclose()
            self._stopped.set()


async def _accept(listener: SocketListener) -> SocketStream:
    """The next connection, as a stream; a cancelled call has accepted nothing.

    Not ``listener.accept()``: on asyncio it awaits ``loop.sock_accept``, whose reader callback
    can still accept a connection after the waiting task was cancelled (the server stopping,
    in the same turn of the loop), and then drops that socket unclosed. Here the socket is
    accepted with no wait between the accept and its owner: cancellation can only land while
    waiting for a connection, and the wrapping runs shielded.
    """
    raw = listener.extra(SocketAttribute.raw_socket)  # noqa: S610
    while True:
        await anyio.wait_readable(raw)
        try:
            sock, _ = raw.accept()
        except (BlockingIOError, InterruptedError):
            continue  # another waiter took it, or a spurious wake-up
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with anyio.CancelScope(shield=True):
                return await SocketStream.from_socket(sock)
        except BaseException:
            sock.close()
            raise


@asynccontextmanager
async def serve_app(app: ASGIApp, *, host: str, port: int) -> AsyncIterator[Server]:
    """Serve ``app`` on ``host:port`` until the block ends (port 0 picks a free port)."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    server = Server(host=host, port=listener.listeners[0].extra(SocketAttribute.local_port))  # noqa: S610
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(server._serve, listener, app)
        logger.info("Hook API emulator listening on %s", server.url)
        try:
            yield server
        finally:
            server.stop()


def run_blocking(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    backend: str,
    on_ready: Callable[[Server], object] | None,
) -> None:
    """Serve ``app`` in a new event loop until :meth:`Server.stop` (or Ctrl-C)."""

    async def main() -> None:
        async with serve_app(app, host=host, port=port) as server:
            if on_ready is not None:
                on_ready(server)
            await server.wait_stopped()

    anyio.run(main, backend=backend)


class _Connection:
    """One client connection: requests in, answers out, one at a time (no pipelining)."""

    #: Seconds an idle kept-alive connection stays open: longer than the keep-alive of common
    #: clients (httpx: 5 s), as real servers are (nginx: 75 s), so that a client never sends
    #: on a connection the server is just closing.
    keep_alive = 75.0

    def __init__(self, app: ASGIApp, stream: SocketStream) -> None:
        self._app = app
        self._stream = stream
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        self._started = False
        self._head = False

    async def run(self) -> None:
        async with self._stream:
            try:
                await self._serve_requests()
            except ConnectionDropped:
                logger.debug("Dropped a connection, as a scripted fault asked.")
            except _BROKEN as exc:
                logger.debug("A client connection broke: %s", type(exc).__name__)
            except h11.ProtocolError as exc:
                await self._refuse(exc)

    async def _serve_requests(self) -> None:
        while True:
            event: Any = h11.NEED_DATA
            with anyio.move_on_after(self.keep_alive):
                event = await self._next_event()
            if not isinstance(event, h11.Request):
                return
            await self._run_app(event)
            if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                return
            self._h11.start_next_cycle()
            self._started = False

    async def _next_event(self) -> Any:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._stream.receive(_READ_SIZE)
            except anyio.EndOfStream:
                data = b""
            self._h11.receive_data(data)

    async def _send(self, event: Any) -> None:
        data = self._h11.send(event)
        if data:
            await self._stream.send(data)

    async def _run_app(self, request: h11.Request) -> None:
        self._head = request.method == b"HEAD"
        raw_path, _, query = bytes(request.target).partition(b"?")
        local = self._stream.extra(SocketAttribute.local_address)  # noqa: S610
        remote = self._stream.extra(SocketAttribute.remote_address)  # noqa: S610
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(bytes(name), bytes(value)) for name, value in request.headers],
            "client": tuple(remote[:2]) if isinstance(remote, tuple) else None,
            "server": tuple(local[:2]) if isinstance(local, tuple) else None,
            "extensions": {DROP_EXTENSION: {}},
        }
        try:
            await self._app(scope, self._receive, self._send_message)
        except (ConnectionDropped, *_BROKEN):
            raise
        except Exception:
            logger.exception("The Hook API emulator failed to answer a request.")
            if not self._started:
                await self._send(_FAILED)
                await self._send(h11.EndOfMessage())

    async def _receive(self) -> Message:
        if self._h11.their_state is not h11.SEND_BODY:
            return {"type": "http.disconnect"}
        if self._h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        try:
            event = await self._next_event()
        except h11.RemoteProtocolError:
            return {"type": "http.disconnect"}
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        # While a body is coming, h11 yields only Data and, last, EndOfMessage.
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send_message(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            self._discard_buffered_body()
            if self._h11.their_state is not h11.DONE:
                # The rest of the body was never read, so this connection cannot carry
                # another request: say so rather than leave the client to find out.
                headers.append((b"connection", b"close"))
            self._started = True
            await self._send(h11.Response(status_code=message["status"], headers=headers))
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            # An answer to HEAD has headers only; h11 refuses body bytes for it.
            if body and not self._head:
                await self._send(h11.Data(data=body))
            if not message.get("more_body", False):
                await self._send(h11.EndOfMessage())

    def _discard_buffered_body(self) -> None:
        """Read past body bytes already received (such as a GET's empty one) without waiting."""
        # A malformed rest of the body only means the connection will close after the answer.
        with contextlib.suppress(h11.RemoteProtocolError):
            while self._h11.their_state is h11.SEND_BODY:
                if self._h11.next_event() is h11.NEED_DATA:
                    return

    async def _refuse(self, exc: h11.ProtocolError) -> None:
        # Not the error's text: h11 quotes the request line, and so the secret, in it.
        logger.debug("Refused a malformed request (%s).", type(exc).__name__)
        status = exc.error_status_hint
        refusal = h11.Response(
            status_code=status,
            headers=[(b"content-length", b"0"), (b"connection", b"close")],
        )
        # h11 refuses if an answer was already under way; the client may be gone too.
        with contextlib.suppress(*_BROKEN, h11.ProtocolError):
            await self._send(refusal)
            await self._send(h11.EndOfMessage())
