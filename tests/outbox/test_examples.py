"""The outbox how-tos in ``docs/outbox.md`` run: the page includes these very files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest
from anyio.abc import ObjectReceiveStream
from asgi_lifespan import LifespanManager

from hookapi import AsyncHookClient, MemoryStore, Receipt
from hookapi.emulator import Emulator
from hookapi.testing import make_client

from .conftest import texts

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A MemoryStore shared by both runs stands in for the file: commits in threads would let the
# virtual clock jump ahead unpredictably (SQLiteStore's durability has its own tests).
@pytest.mark.parametrize("emulator", [{"per_hour": 120}], indirect=True)
async def test_the_chat_bot_answers_in_order_and_a_restart_sends_the_rest(
    emulator: Emulator, client: AsyncHookClient
) -> None:
    bot = load("outbox_chatbot")
    store = MemoryStore()
    commands = [f"/echo {n}" if n % 3 else f"/status {n}" for n in range(300)]
    replies = [f"{n}" for n in range(300) if n % 3]  # 200: more than an hour's quota
    left: list[Receipt] = []

    async def run(receive: ObjectReceiveStream[str]) -> None:
        left[:] = await bot.run_bot(client, receive, store=store)

    send, receive = anyio.create_memory_object_stream[str](10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, receive)
        async with send:
            for command in commands:
                await send.send(command)
    # One hour's quota went out while it drained for 30 s; the rest is stored, in order.
    assert texts(emulator) == replies[:120]
    assert [r.text for r in left] == replies[120:]
    # The bot starts again: the stored replies go out first, as the quota comes back.
    send, receive = anyio.create_memory_object_stream[str](10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, receive)
        async with send:
            await anyio.sleep(2 * 3600)
            await send.send("/echo back")
    assert texts(emulator) == [*replies, "back"]
    assert left == []


async def test_the_fastapi_service_puts_and_returns_at_once(tmp_path: Path) -> None:
    service = load("outbox_fastapi")
    emulator = Emulator(per_hour=2)
    hook = emulator.create_hook()
    store = MemoryStore()
    app = service.create_app(lambda: make_client(emulator, hook), store=store)
    async with LifespanManager(app, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            answers = [await http.post("/notify", params={"text": f"n{i}"}) for i in range(4)]
            assert [a.status_code for a in answers] == [202] * 4
            assert answers[0].json() == {"id": 1, "state": "queued"}
            assert anyio.current_time() < 1  # no handler waited for the quota
            bad = await http.post("/notify", params={"text": "  "})
            assert bad.status_code == 422
            await anyio.sleep(1)
            status = (await http.get("/outbox")).json()
            assert status == {
                "pending": 2,
                "dead_letters": 0,
                "paused": False,
                "pause_reason": None,
            }
    # Shutdown drained for 10 s: the two past the quota stay stored for the next start.
    assert texts(emulator) == ["n0", "n1"]
    app = service.create_app(lambda: make_client(emulator, hook), store=store)
    async with LifespanManager(app, shutdown_timeout=60):
        await anyio.sleep(2 * 3600)
    assert texts(emulator) == ["n0", "n1", "n2", "n3"]
