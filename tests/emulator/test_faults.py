"""Fault injection: scripted statuses, drops and delays, random faults and latency."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from hookapi.emulator import Emulator, Fault, Hook
from hookapi.emulator._app import DROP_EXTENSION, ConnectionDropped, Message

from .conftest import RATE_HEADERS, HandClock, post, rate, send

pytestmark = pytest.mark.anyio


async def test_a_scripted_500_counts_and_posts_nothing(emulator: Emulator, hook: Hook) -> None:
    emulator.fail_next(500)
    response = await post(emulator, hook, "lost")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert rate(response) == (3, 5, 1, 2)
    assert "retry-after" not in response.headers
    assert (await post(emulator, hook, "kept")).status_code == 200
    assert [m.text for m in emulator.messages(hook)] == ["kept"]
    assert emulator.faults_injected == {"500": 1}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(7, "7"), (2.5, "3"), (0, "0"), ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("soon", "soon")],
)
async def test_a_scripted_503_is_maintenance_with_retry_after(
    emulator: Emulator, hook: Hook, retry_after: float | str, header: str | None
) -> None:
    emulator.fail_next(503, retry_after=retry_after)
    response = await post(emulator, hook)
    assert response.status_code == 503
    assert response.json()["error"] == "maintenance"
    assert response.headers["retry-after"] == (header or retry_after)
    assert rate(response) == (3, 5, 0, 3)  # not counted
    assert emulator.messages(hook) == []


async def test_a_scripted_429_refuses_without_counting(emulator: Emulator, hook: Hook) -> None:
    emulator.fail_next(429, retry_after=30)
    emulator.fail_next(429)
    first, second = await post(emulator, hook), await post(emulator, hook)
    assert (first.status_code, second.status_code) == (429, 429)
    assert first.headers["retry-after"] == "30"
    assert "retry-after" not in second.headers
    assert rate(second) == (3, 5, 0, 3)
    assert emulator.faults_injected == {"429": 2}


@pytest.mark.parametrize("status", [503, 502, 500])
async def test_headers_false_mimics_a_proxy_page(
    emulator: Emulator, hook: Hook, status: int
) -> None:
    emulator.fail_next(status, headers=False, retry_after=10)
    response = await post(emulator, hook)
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html"
    assert f"<h1>{status} " in response.text
    assert not any(name in response.headers for name in RATE_HEADERS)
    assert response.headers["retry-after"] == "10"


async def test_other_statuses_can_be_scripted(clock: HandClock) -> None:
    emulator = Emulator(clock=clock)
    hook = emulator.create_hook()
    emulator.fail_next(403)
    emulator.fail_next(418)
    emulator.fail_next(599)
    emulator.fail_next(599, headers=False)
    forbidden, teapot, unnamed = [await post(emulator, hook) for _ in range(3)]
    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "forbidden")
    assert (teapot.status_code, teapot.json()["error"]) == (418, "error")
    assert (unnamed.status_code, unnamed.json()["message"]) == (599, "Error")
    page = await post(emulator, hook)
    assert (page.status_code, "<h1>599 Error</h1>" in page.text) == (599, True)


async def test_faults_strike_in_fifo_order(emulator: Emulator, hook: Hook) -> None:
    first = emulator.fail_next(503, times=2)
    second = emulator.fail_next(500)
    assert emulator.pending_faults() == [first, first, second]
    statuses = [(await post(emulator, hook)).status_code for _ in range(4)]
    assert statuses == [503, 503, 500, 200]
    assert emulator.pending_faults() == []
    assert emulator.faults_injected == {"503": 2, "500": 1}


async def test_a_fault_for_one_hook_skips_the_others(emulator: Emulator, hook: Hook) -> None:
    other = emulator.create_hook("Sales")
    for_other = emulator.fail_next(503, hook=other)
    emulator.fail_next(500, hook=hook)
    assert (await post(emulator, hook)).status_code == 500
    assert emulator.pending_faults() == [for_other]
    assert (await post(emulator, hook)).status_code == 200
    assert (await post(emulator, other)).status_code == 503
    assert (await post(emulator, other)).status_code == 200


async def test_unauthenticated_requests_take_no_fault(emulator: Emulator, hook: Hook) -> None:
    fault = emulator.fail_next(500)
    await send(emulator, "POST", f"/{hook.id}/wrong/message")
    await send(emulator, "POST", "/elsewhere")
    assert emulator.pending_faults() == [fault]


async def test_a_fault_behind_the_limiter_waits_for_an_admitted_request(
    emulator: Emulator, hook: Hook, clock: HandClock
) -> None:
    for _ in range(3):
        await post(emulator, hook)
    emulator.fail_next(500)
    assert (await post(emulator, hook)).status_code == 429
    assert len(emulator.pending_faults()) == 1  # not wasted on a request the quota refused
    clock.now = 3600.0
    assert (await post(emulator, hook)).status_code == 500


async def test_a_drop_raises_remote_protocol_error_in_process(
    emulator: Emulator, hook: Hook
) -> None:
    emulator.fail_next("drop")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await post(emulator, hook, "dropped")
    assert emulator.messages(hook) == []
    assert emulator.quota(hook).used_hour == 0
    assert emulator.faults_injected == {"drop": 1}
    assert emulator.status_counts == {}


async def test_a_drop_after_posting_leaves_the_client_in_doubt(
    emulator: Emulator, hook: Hook
) -> None:
    emulator.fail_next("drop", posted=True)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(emulator, hook, "delivered anyway")
    assert [m.text for m in emulator.messages(hook)] == ["delivered anyway"]
    assert emulator.quota(hook).used_hour == 1


async def test_a_delay_answers_late(emulator: Emulator, hook: Hook) -> None:
    emulator.fail_next("delay", delay=30.0)
    started = anyio.current_time()
    async with httpx.AsyncClient(transport=emulator.transport(), timeout=60.0) as http:
        response = await http.post(f"{hook.url}/message", json={"message": "slow"})
    assert response.status_code == 200
    assert anyio.current_time() - started == pytest.approx(30.0, abs=0.01)
    assert emulator.faults_injected == {"delay": 1}


async def test_a_delay_past_the_read_timeout_raises_read_timeout(
    emulator: Emulator, hook: Hook
) -> None:
    emulator.fail_next("delay", delay=30.0)
    started = anyio.current_time()
    async with httpx.AsyncClient(transport=emulator.transport(), timeout=10.0) as http:
        with pytest.raises(httpx.ReadTimeout, match=r"10\.0 s read timeout"):
            await http.post(f"{hook.url}/message", json={"message": "late"})
    assert anyio.current_time() - started == pytest.approx(10.0, abs=0.01)
    # The message was handled before the answer was held back: the client cannot know.
    assert [m.text for m in emulator.messages(hook)] == ["late"]


async def test_latency_is_added_to_every_answer(clock: HandClock) -> None:
    emulator = Emulator(latency=2.0, clock=clock)
    hook = emulator.create_hook()
    started = anyio.current_time()
    await post(emulator, hook)
    await send(emulator, "GET", "/nowhere")
    assert anyio.current_time() - started == pytest.approx(4.0, abs=0.01)
    emulator.latency = 0
    assert emulator.latency == 0.0
    started = anyio.current_time()
    await post(emulator, hook)
    assert anyio.current_time() - started == pytest.approx(0.0, abs=0.01)
    with pytest.raises(ValueError, match="latency"):
        emulator.latency = -1


async def statuses_with(emulator: Emulator, hook: Hook, count: int) -> list[int]:
    return [(await post(emulator, hook)).status_code for _ in range(count)]


async def test_random_faults_are_seeded_and_replayable(clock: HandClock) -> None:
    runs = []
    for _ in range(2):
        emulator = Emulator(per_hour=1000, fault_rate=0.3, seed=1234, clock=clock)
        runs.append(await statuses_with(emulator, emulator.create_hook(), 300))
    assert runs[0] == runs[1]
    faults = [status for status in runs[0] if status != 200]
    assert set(faults) == {500, 503}
    assert 60 <= len(faults) <= 120  # about 30 %
    assert emulator.faults_injected == {
        "500": faults.count(500),
        "503": faults.count(503),
    }


async def test_the_fault_rate_can_change_at_run_time(clock: HandClock) -> None:
    emulator = Emulator(per_hour=1000, clock=clock, seed=1)
    hook = emulator.create_hook()
    assert set(await statuses_with(emulator, hook, 20)) == {200}
    emulator.fault_rate = 1
    assert emulator.fault_rate == 1.0
    assert set(await statuses_with(emulator, hook, 20)) <= {500, 503}
    emulator.fault_rate = 0.0
    assert set(await statuses_with(emulator, hook, 20)) == {200}
    with pytest.raises(ValueError, match="fault_rate"):
        emulator.fault_rate = -0.1


async def test_a_scripted_fault_takes_precedence_over_random_ones(clock: HandClock) -> None:
    emulator = Emulator(fault_rate=1.0, seed=3, clock=clock)
    hook = emulator.create_hook()
    emulator.fail_next(429)
    assert (await post(emulator, hook)).status_code == 429


async def test_clear_faults_forgets_the_script_but_keeps_the_tally(
    emulator: Emulator, hook: Hook
) -> None:
    emulator.fail_next(503)
    await post(emulator, hook)
    emulator.fail_next(500, times=3)
    emulator.clear_faults()
    assert emulator.pending_faults() == []
    assert (await post(emulator, hook)).status_code == 200
    assert emulator.faults_injected == {"503": 1}


@pytest.mark.parametrize(
    ("args", "options", "says"),
    [
        ((200,), {}, "status must be"),
        ((600,), {}, "status must be"),
        (("boom",), {}, "status must be"),
        ((True,), {}, "status must be"),
        ((500,), {"times": 0}, "times"),
        ((500,), {"times": 1.5}, "times"),
        (("delay",), {}, "delay"),
        ((500,), {"delay": 3}, "delay"),
        (("delay",), {"delay": -3}, "delay"),
        ((500,), {"posted": True}, "posted"),
        ((503,), {"retry_after": -1}, "retry_after"),
        ((503,), {"retry_after": "1\r\nX-Evil: 1"}, "retry_after"),
        ((503,), {"retry_after": ""}, "retry_after"),
    ],
)
def test_fail_next_refuses_nonsense(
    args: tuple[Any, ...], options: dict[str, Any], says: str
) -> None:
    emulator = Emulator()
    with pytest.raises(ValueError, match=says):
        emulator.fail_next(*args, **options)
    assert emulator.pending_faults() == []


def test_fail_next_refuses_an_unknown_hook() -> None:
    with pytest.raises(KeyError, match="no hook"):
        Emulator().fail_next(500, hook="nope")


def test_a_fault_describes_itself() -> None:
    emulator = Emulator()
    hook = emulator.create_hook()
    fault = emulator.fail_next("delay", delay=1, hook=hook)
    assert fault == Fault(kind="delay", hook_id=hook.id, delay=1.0)
    assert fault.label == "delay"


async def test_a_drop_under_a_foreign_server_aborts_the_answer(
    emulator: Emulator, hook: Hook
) -> None:
    """A server without the drop extension gets a started answer, then the exception."""
    emulator.fail_next("drop")
    sent: list[Message] = []
    body = [{"type": "http.request", "body": b'{"message": "x"}', "more_body": False}]

    async def receive() -> Message:
        return body.pop(0) if body else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": f"/{hook.id}/{hook.secret}/message",
        "headers": [(b"content-type", b"application/json")],
    }
    with pytest.raises(ConnectionDropped):
        await emulator.app(scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start"]
    sent.clear()
    emulator.fail_next("drop")
    body.append({"type": "http.request", "body": b"", "more_body": False})
    scope["extensions"] = {DROP_EXTENSION: {}}
    with pytest.raises(ConnectionDropped):
        await emulator.app(scope, receive, send)
    assert sent == []
