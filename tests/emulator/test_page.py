"""The desktop page in process: what it shows, what it escapes, what it never shows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from hookapi.emulator import Emulator, Hook
from hookapi.emulator._page import DesktopPage

pytestmark = pytest.mark.anyio

EVIL = "<script>alert(1)</script> & \"quotes\" 'too'"


@pytest.fixture
def emulator() -> Emulator:
    """A roomy emulator (the package's conftest gives a tiny one for quota edges)."""
    return Emulator(per_hour=100, per_day=1000)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Ops")


@pytest.fixture
def page(emulator: Emulator) -> DesktopPage:
    return DesktopPage(emulator, note="a <note>")


@pytest.fixture
async def http(page: DesktopPage) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=page)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


async def post(http: httpx.AsyncClient, hook: Hook, text: str) -> httpx.Response:
    return await http.post(f"/{hook.id}/{hook.secret}/message", json={"message": text})


async def test_the_hook_endpoint_is_the_emulators(
    http: httpx.AsyncClient, emulator: Emulator, hook: Hook
) -> None:
    answer = await post(http, hook, "hello")
    assert (answer.status_code, answer.text) == (200, "ok")
    assert answer.headers["x-rate-limit-remaining"] == "99"
    assert [m.text for m in emulator.messages(hook)] == ["hello"]
    assert (await http.get(f"/{hook.id}/{hook.secret}/message")).status_code == 405
    assert (await http.post("/")).status_code == 404
    assert (await http.get("/no/such/thing/here")).status_code == 404


async def test_the_index_escapes_every_piece_of_user_text(
    http: httpx.AsyncClient, emulator: Emulator, hook: Hook
) -> None:
    evil_desktop = emulator.create_hook('<img src=x onerror="alert(2)">')
    assert (await post(http, hook, EVIL)).status_code == 200
    answer = await http.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    body = answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; &#x27;too&#x27;" in body
    assert "<script" not in body
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in body
    assert "<img" not in body
    assert "a &lt;note&gt;" in body
    assert hook.id in body
    assert evil_desktop.id in body
    assert hook.secret not in body
    assert evil_desktop.secret not in body


async def test_the_page_forbids_scripts_and_refreshes_itself(http: httpx.AsyncClient) -> None:
    answer = await http.get("/")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # so default-src 'none' applies to scripts
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert '<meta http-equiv="refresh" content="2">' in answer.text


async def test_the_index_shows_quota_faults_and_the_latest_messages_first(
    http: httpx.AsyncClient, emulator: Emulator, hook: Hook
) -> None:
    for n in range(25):
        await post(http, hook, f"message {n:02d}")
    emulator.fail_next(503, times=3)
    assert (await post(http, hook, "refused")).status_code == 503
    body = (await http.get("/")).text
    assert "25 messages, the latest 20 shown, newest first" in body
    assert body.index("message 24") < body.index("message 05")
    assert "message 04" not in body
    assert "25 of 100 used this hour, 25 of 1000 today, 75 left" in body
    assert "Faults injected: 503 &times; 1 · 2 scripted faults still to come" in body
    assert "fixed window · 100 requests per hour · 1000 per day" in body


async def test_an_empty_emulator_says_so(page: DesktopPage, emulator: Emulator) -> None:
    assert "No Desktop has a hook yet." in page.render_index()
    emulator.create_hook("Quiet")
    assert "No message yet." in page.render_index()


async def test_a_desktop_has_a_page_of_its_own(
    http: httpx.AsyncClient, emulator: Emulator, hook: Hook
) -> None:
    other = emulator.create_hook("Other / desk & co")
    await post(http, hook, "for ops")
    await post(http, other, "for the other")
    index = (await http.get("/")).text
    assert 'href="/desktops/Other%20%2F%20desk%20%26%20co"' in index
    answer = await http.get("/desktops/Other%20%2F%20desk%20%26%20co")
    assert answer.status_code == 200
    assert "for the other" in answer.text
    assert "for ops" not in answer.text
    assert "Other / desk &amp; co" in answer.text
    missing = await http.get("/desktops/Nobody?x=1")
    assert missing.status_code == 404
    assert "No such Desktop" in missing.text


async def test_state_json_has_the_same_facts_and_no_secret(
    http: httpx.AsyncClient, emulator: Emulator, hook: Hook
) -> None:
    await post(http, hook, EVIL)
    emulator.fail_next(500)
    await post(http, hook, "fails")
    answer = await http.get("/state.json?fresh=1")
    assert answer.headers["content-type"] == "application/json"
    assert hook.secret not in answer.text
    state = answer.json()
    assert state["faults_injected"] == {"500": 1}
    assert state["answers"] == {"200": 1, "500": 1}
    (desktop,) = state["desktops"]
    assert desktop["name"] == "Ops"
    assert desktop["message_count"] == 1
    assert desktop["messages"][0]["text"] == EVIL
    assert desktop["hooks"] == [{"id": hook.id, "used_hour": 2, "used_day": 2, "remaining": 98}]
    assert "<" not in answer.text  # ensure_ascii and no raw markup: safe even if sniffed
    assert json.loads(answer.text) == state


async def test_head_has_headers_and_no_body(http: httpx.AsyncClient) -> None:
    answer = await http.head("/")
    assert answer.status_code == 200
    assert int(answer.headers["content-length"]) > 0
    assert answer.content == b""


async def test_lifespan_goes_to_the_emulator(page: DesktopPage) -> None:
    sent: list[dict[str, str]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, str]:
        return next(messages)

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    await page({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_message_times_are_shown_in_utc_iso_8601() -> None:
    emulator = Emulator(clock=lambda: datetime(2026, 12, 5, 10, 59, 30, 250_000, UTC).timestamp())
    hook = emulator.create_hook("Ops")
    page = DesktopPage(emulator)
    transport = httpx.ASGITransport(app=page)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        assert (await post(http, hook, "deployed")).status_code == 200
        state = (await http.get("/state.json")).json()
        body = (await http.get("/")).text
    (message,) = state["desktops"][0]["messages"]
    assert message == {
        "text": "deployed",
        "hook_id": hook.id,
        "received_at": "2026-12-05T10:59:30.250000+00:00",
    }
    assert (
        '<time datetime="2026-12-05T10:59:30.250000+00:00">2026-12-05 10:59:30 UTC</time>' in body
    )
