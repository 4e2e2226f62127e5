"""The HTTP server's rarer paths, driven through a scripted stream instead of a socket."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute

from hookapi.emulator._app import Message, Receive, Scope, Send
from hookapi.emulator._server import _Connection

pytestmark = pytest.mark.anyio


class ScriptedStream:
    """Hands out the given chunks, records what is sent, and can fail on sending."""

    def __init__(self, chunks: Iterable[bytes], *, broken: bool = False) -> None:
        self.chunks = list(chunks)
        self.sent: list[bytes] = []
        self.broken = broken
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        if not self.chunks:
            raise anyio.EndOfStream
        return self.chunks.pop(0)

    async def send(self, item: bytes) -> None:
        if self.broken:
            raise anyio.BrokenResourceError
        self.sent.append(item)

    def extra(self, attribute: Any, default: Any = None) -> Any:
        addresses = {
            SocketAttribute.local_address: ("127.0.0.1", 8000),
            SocketAttribute.remote_address: ("127.0.0.1", 50000),
        }
        return addresses[attribute]

    async def aclose(self) -> None:
        self.closed = True

    async def __aenter__(self) -> ScriptedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def chatty_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the body, asks once more (and is told the client is done), answers in pieces."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    after: Message = await receive()
    assert after["type"] == "http.disconnect"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


REQUEST = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"


async def run(stream: ScriptedStream) -> None:
    await _Connection(chatty_app, stream).run()  # type: ignore[arg-type]


async def test_an_answer_in_pieces_is_chunked() -> None:
    stream = ScriptedStream([REQUEST])
    await run(stream)
    sent = b"".join(stream.sent)
    assert sent.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in sent.lower()
    assert sent.endswith(b"5\r\nhello\r\n0\r\n\r\n")
    assert stream.closed


async def test_a_client_gone_while_answering_is_only_noted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stream = ScriptedStream([REQUEST], broken=True)
    await run(stream)
    assert "A client connection broke: BrokenResourceError" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_a_client_gone_before_its_refusal_is_only_noted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stream = ScriptedStream([b"NOT HTTP AT ALL\r\n\r\n"], broken=True)
    await run(stream)
    assert "Refused a malformed request" in caplog.text
    assert stream.closed
