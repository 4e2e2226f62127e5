"""Tests of the FastAPI how-to's app, against the emulator (the how-to shows this file)."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi.testclient import TestClient
from fastapi_app import app

from hookapi.emulator import Emulator, Hook
from hookapi.testing import assert_posted


@pytest.fixture(autouse=True)
def hook_url(served_hook_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # The app builds its client from HOOKAPI_URL when it starts: point it at the emulator,
    # served over a loopback socket for the test's duration.
    monkeypatch.setenv("HOOKAPI_URL", served_hook_url)
    return served_hook_url


def test_notify_posts_the_text(hook_emulator: Emulator, hook: Hook) -> None:
    with TestClient(app) as client:  # `with` runs the lifespan
        answer = client.post("/notify", json={"text": "Deployed"})
    assert answer.status_code == 200
    assert answer.json() == {"attempts": 1, "by": "deployer"}
    assert_posted(hook_emulator, hook, ["Deployed"])


def test_an_empty_text_is_the_callers_mistake(hook_emulator: Emulator, hook: Hook) -> None:
    with TestClient(app) as client:
        answer = client.post("/notify", json={"text": "   "})
    assert answer.status_code == 422  # in the shape of FastAPI's own validation errors
    assert answer.json()["detail"][0]["msg"] == "The message must not be empty or only whitespace."
    assert_posted(hook_emulator, hook, [])


def test_over_quota_says_when_to_come_back(hook_emulator: Emulator, hook: Hook) -> None:
    hook_emulator.fail_next(429, retry_after=120)  # longer than the call may wait
    with TestClient(app) as client:
        answer = client.post("/notify", json={"text": "Deployed"})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "120"
    assert answer.json()["error"] == "rate_limited"
    assert hook.secret not in answer.text


def test_a_lost_answer_is_a_bad_gateway(hook_emulator: Emulator, hook: Hook) -> None:
    hook_emulator.fail_next("drop")  # the connection closes without an answer
    with TestClient(app) as client:
        answer = client.post("/notify", json={"text": "Deployed"})
    assert answer.status_code == 502
    assert answer.json()["error"] == "hook_unreachable"
    assert answer.json()["delivery"] == "unknown"  # it may have been posted
    # The caller learns what happened, never where the app posts.
    assert hook.secret not in answer.text
    assert hook.id not in answer.text
    assert "127.0.0.1" not in answer.text


@pytest.mark.anyio
async def test_notify_through_asgi_transport(hook_emulator: Emulator, hook: Hook) -> None:
    async with LifespanManager(app) as manager:  # runs the lifespan, keeps its state
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            answer = await client.post("/notify", json={"text": "Deployed"})
    assert answer.status_code == 200
    assert_posted(hook_emulator, hook, ["Deployed"])
