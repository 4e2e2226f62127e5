"""The in-process httpx transport: the emulator's app behind ``httpx.ASGITransport``.

``httpx.ASGITransport`` knows nothing of timeouts or dropped connections, so this transport
adds both, making the failures look as they do over a socket: a dropped connection raises
``httpx.RemoteProtocolError`` and an answer later than the read timeout ``httpx.ReadTimeout``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx

from ._app import DROP_EXTENSION, ASGIApp, ConnectionDropped, Receive, Scope, Send

__all__ = ["EmulatorTransport"]


class _BodyStream(httpx.AsyncByteStream):
    """A request body the transport can close when the app stopped reading it halfway.

    An async generator left suspended (the app refuses an oversized body after its first
    chunks) would otherwise be finalised by the garbage collector, which trio reports.
    """

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream
        self._chunks: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._stream.__aiter__()
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


class EmulatorTransport(httpx.AsyncBaseTransport):
    """Runs each request through an ASGI app in the calling task; no socket is opened.

    Args:
        app: The emulator's ASGI application.
    """

    def __init__(self, app: ASGIApp) -> None:
        async def advertise_drop(scope: Scope, receive: Receive, send: Send) -> None:
            extensions = {**(scope.get("extensions") or {}), DROP_EXTENSION: {}}
            await app({**scope, "extensions": extensions}, receive, send)

        self._asgi = httpx.ASGITransport(app=advertise_drop, client=("127.0.0.1", 49152))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the app, honouring the request's read timeout."""
        timeouts = request.extensions.get("timeout") or {}
        read_timeout = timeouts.get("read")
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = _BodyStream(request.stream)
        inner = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            stream=body,
            extensions=request.extensions,
        )
        try:
            with anyio.fail_after(read_timeout):
                return await self._asgi.handle_async_request(inner)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(
                f"The emulator did not answer within the {read_timeout} s read timeout.",
                request=request,
            ) from exc
        finally:
            await body.aclose()
