"""Serving from outside any event loop (``Emulator.run``), and the app under uvicorn."""

from __future__ import annotations

import logging
import threading

import anyio
import httpx
import pytest
import uvicorn

from hookapi.emulator import Emulator, Server

pytestmark = pytest.mark.socket


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_serves_until_stopped_from_another_thread(backend: str) -> None:
    emulator = Emulator()
    hook = emulator.create_hook()
    servers: list[Server] = []
    ready = threading.Event()

    def on_ready(server: Server) -> None:
        servers.append(server)
        ready.set()

    thread = threading.Thread(
        target=emulator.run,
        kwargs={"port": 0, "backend": backend, "on_ready": on_ready},
        daemon=True,
    )
    thread.start()
    assert ready.wait(10)
    [server] = servers
    response = httpx.post(
        f"{hook.url_for(server.url)}/message", json={"message": "from a thread"}, timeout=10
    )
    assert response.status_code == 200
    server.stop()
    thread.join(10)
    assert not thread.is_alive()
    server.stop()  # the loop is gone: nothing to do, and no error
    assert [m.text for m in emulator.messages(hook)] == ["from a thread"]


def test_run_without_on_ready_stops_from_its_own_loop() -> None:
    """``Server.stop`` called in the loop's own thread cancels directly."""
    emulator = Emulator()

    def stop_at_once(server: Server) -> None:
        server.stop()

    emulator.run(port=0, on_ready=stop_at_once)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn runs on asyncio only
async def test_uvicorn_serves_the_app_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = Emulator(per_hour=10)
    hook = emulator.create_hook()
    config = uvicorn.Config(
        emulator.app, host="127.0.0.1", port=0, access_log=False, log_config=None
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110  (uvicorn offers a flag, no event)
                await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"{hook.url_for(f'http://127.0.0.1:{port}')}/message"
        async with httpx.AsyncClient() as http:
            ok = await http.post(url, json={"message": "via uvicorn"})
            wrong = await http.post(url.replace(hook.secret, "0" * 64), json={"message": "x"})
            emulator.fail_next("drop")
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post(url, json={"message": "dropped"})
        server.should_exit = True
    assert (ok.status_code, ok.text, ok.headers["x-rate-limit-used"]) == (200, "ok", "1")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "access_denied")
    assert [m.text for m in emulator.messages(hook)] == ["via uvicorn"]
    # uvicorn's records (its access log is off, as docs/emulator.md advises) and the
    # emulator's; this test's bare httpx client logs its URLs itself.
    logged = [r.getMessage() for r in caplog.records if r.name != "httpx"]
    assert "Exception in ASGI application\n" in logged  # uvicorn's word for the drop
    assert not any(hook.secret in message for message in logged)
