"""The emulator over a real loopback socket: its own HTTP/1.1 server, curl, and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import shutil
import socket
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import trio
from anyio.abc import SocketStream

from hookapi.emulator import Emulator, Hook, Server
from hookapi.emulator._app import Receive, Scope, Send
from hookapi.emulator._server import _Connection, serve_app

pytestmark = [pytest.mark.anyio, pytest.mark.socket]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Real clocks: a virtual clock would jump past timeouts while the kernel moves bytes."""
    return request.param


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(per_hour=50, per_day=500, max_body_bytes=1000)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Ops")


class RawConnection:
    """A bare connection, to see what the server does byte by byte."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _fill(self) -> None:
        self.buffer += await self.stream.receive()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        with anyio.fail_after(5):
            while b"\r\n\r\n" not in self.buffer:
                await self._fill()
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            status_line, *lines = head.decode().split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines)
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                await self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    async def is_closed_by_server(self) -> bool:
        with anyio.fail_after(5):
            try:
                self.buffer += await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return True
        return False


@asynccontextmanager
async def connect(server: Server) -> AsyncIterator[RawConnection]:
    async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
        yield RawConnection(stream)


def message_request(hook: Hook, body: bytes, *extra: bytes) -> bytes:
    head = [
        f"POST /{hook.id}/{hook.secret}/message HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def test_serve_answers_over_a_real_socket(emulator: Emulator, hook: Hook) -> None:
    async with emulator.serve() as server, httpx.AsyncClient() as http:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert repr(server) == f"<Server url='{server.url}'>"
        response = await http.post(f"{hook.url_for(server.url)}/message", json={"message": "hi"})
        missing = await http.get(f"{server.url}/nowhere")
    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["x-rate-limit-used"] == "1"
    assert missing.status_code == 404
    assert [m.text for m in emulator.messages(hook)] == ["hi"]


async def test_a_connection_arriving_as_the_server_stops_is_closed(
    emulator: Emulator, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The stop runs in the loop's next turn before the listener's readiness is handled, as
    # when Ctrl-C or the end of a test stops a server that a client has just reached. On
    # asyncio, loop.sock_accept then accepted the connection for a cancelled waiter and
    # dropped the socket unclosed (a ResourceWarning naming the server's port).
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with emulator.serve() as server:
            await anyio.wait_all_tasks_blocked()
            client = socket.create_connection(("127.0.0.1", server.port))  # done on loopback
            if anyio_backend == "asyncio":
                asyncio.get_running_loop().call_soon(server.stop)
            else:
                trio.lowlevel.current_trio_token().run_sync_soon(server.stop)
            await server.wait_stopped()
        gc.collect()
    with client:
        client.settimeout(5)
        # Closed unread, the server's side may answer with a reset rather than an end.
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(1) == b""
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_connections_are_kept_alive(emulator: Emulator, hook: Hook) -> None:
    async with emulator.serve() as server, connect(server) as raw:
        for text in (b"one", b"two"):
            await raw.send(message_request(hook, b'{"message": "%s"}' % text))
            status, headers, body = await raw.response()
            assert (status, body) == (200, b"ok")
            assert "connection" not in headers
        # A GET with no body, on the same connection, then a POST again.
        await raw.send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await raw.response())[0] == 404
        await raw.send(message_request(hook, b'{"message": "three"}'))
        assert (await raw.response())[0] == 200
    assert [m.text for m in emulator.messages(hook)] == ["one", "two", "three"]


async def test_head_gets_headers_only(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    async with emulator.serve() as server, httpx.AsyncClient() as http:
        wrong_method = await http.head(f"{hook.url_for(server.url)}/message")
        missing = await http.head(f"{server.url}/nowhere")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    assert (missing.status_code, missing.content) == (404, b"")
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_a_chunked_body_is_read(emulator: Emulator, hook: Hook) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"message": '
        yield b'"in pieces"}'

    async with emulator.serve() as server, httpx.AsyncClient() as http:
        url = f"{hook.url_for(server.url)}/message"
        headers = {"content-type": "application/json"}
        response = await http.post(url, content=chunks(), headers=headers)
    assert response.status_code == 200
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert [m.text for m in emulator.messages(hook)] == ["in pieces"]


async def test_expect_100_continue_is_honoured(emulator: Emulator, hook: Hook) -> None:
    body = b'{"message": "after continue"}'
    async with emulator.serve() as server, connect(server) as raw:
        request = message_request(hook, body, b"Expect: 100-continue")
        await raw.send(request[: -len(body)])
        assert (await raw.response())[0] == 100
        await raw.send(body)
        assert (await raw.response())[0] == 200


async def test_an_oversized_body_already_received_keeps_the_connection(
    emulator: Emulator, hook: Hook
) -> None:
    async with emulator.serve() as server, connect(server) as raw:
        await raw.send(message_request(hook, b'{"message": "' + b"x" * 5000 + b'"}'))
        status, headers, body = await raw.response()
        assert (status, "connection" in headers) == (400, False)
        assert b"larger than 1000 bytes" in body
        await raw.send(message_request(hook, b'{"message": "fits"}'))
        assert (await raw.response())[0] == 200


async def test_an_oversized_body_still_coming_closes_the_connection(
    emulator: Emulator, hook: Hook
) -> None:
    async with emulator.serve() as server, connect(server) as raw:
        request = message_request(hook, b"x" * 10_000_000)
        await raw.send(request[:5000])  # the rest never needs to be sent
        status, headers, body = await raw.response()
        assert (status, headers["connection"]) == (400, "close")
        assert b"larger than 1000 bytes" in body
        assert await raw.is_closed_by_server()


async def test_a_malformed_body_not_read_still_gets_its_answer(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    async with emulator.serve() as server, connect(server) as raw:
        head = b"POST /nowhere HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        await raw.send(head + b"zz\r\nnot a chunk\r\n")
        status, headers, _ = await raw.response()
        assert (status, headers["connection"]) == (404, "close")
        assert await raw.is_closed_by_server()
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_a_malformed_request_gets_400_and_no_secret_is_logged(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with emulator.serve() as server, connect(server) as raw:
        line = f"POST /{hook.id}/{hook.secret}/message HTTP/1.1\r\nNo colon\r\n\r\n"
        await raw.send(line.encode())
        assert (await raw.response())[0] == 400
        assert await raw.is_closed_by_server()
    assert hook.secret not in caplog.text
    assert "Refused a malformed request (RemoteProtocolError)" in caplog.text


async def test_a_drop_closes_the_connection_without_an_answer(
    emulator: Emulator, hook: Hook
) -> None:
    emulator.fail_next("drop")
    async with emulator.serve() as server, httpx.AsyncClient() as http:
        url = f"{hook.url_for(server.url)}/message"
        with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
            await http.post(url, json={"message": "dropped"})
        # The server lives on.
        assert (await http.post(url, json={"message": "next"})).status_code == 200
    assert [m.text for m in emulator.messages(hook)] == ["next"]


async def test_a_client_leaving_mid_body_is_taken_calmly(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    async with emulator.serve() as server:
        async with connect(server) as raw:
            await raw.send(message_request(hook, b"x" * 100)[:-90])
        async with httpx.AsyncClient() as http:
            url = f"{hook.url_for(server.url)}/message"
            assert (await http.post(url, json={"message": "ok"})).status_code == 200
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert emulator.quota(hook).used_hour == 1


async def test_an_idle_connection_is_closed(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Connection, "keep_alive", 0.05)
    async with emulator.serve() as server, connect(server) as raw:
        assert await raw.is_closed_by_server()


async def broken_before_answering(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("broken")


async def broken_while_answering(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]}
    )
    raise RuntimeError("broken")


async def test_an_app_failure_is_a_500_or_a_broken_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with httpx.AsyncClient() as http:
        async with serve_app(broken_before_answering, host="127.0.0.1", port=0) as server:
            response = await http.get(f"{server.url}/")
        assert response.status_code == 500
        async with serve_app(broken_while_answering, host="127.0.0.1", port=0) as server:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"{server.url}/")
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert all("failed to answer a request" in r.getMessage() for r in failures)


async def test_the_service_example_curl_command_works_unchanged_but_for_host(
    emulator: Emulator, hook: Hook
) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed for this test"
    async with emulator.serve() as server:
        result = await anyio.run_process(
            [
                curl,
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"message": "Hello"}',
                "--max-time",
                "10",
                f"http://127.0.0.1:{server.port}/{hook.id}/{hook.secret}/message",
            ]
        )
        verbose = await anyio.run_process(
            [curl, "-sS", "-i", "-X", "POST", "-d", "{}", f"{server.url}/{hook.id}/x/message"],
            check=False,
        )
    assert result.stdout == b"ok"
    assert [m.text for m in emulator.messages(hook)] == ["Hello"]
    head, _, body = verbose.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 401")
    for name in ("total-per-hour: 50", "total-per-day: 500", "used: 0", "remaining: 50"):
        assert f"x-rate-limit-{name}" in head
    assert json.loads(body)["error"] == "access_denied"


async def test_a_server_url_brackets_an_ipv6_host() -> None:
    server = Server(host="::1", port=8080)
    assert server.url == "http://[::1]:8080"
