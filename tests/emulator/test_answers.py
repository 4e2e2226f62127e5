"""The answers the emulator gives, status by status, exactly as the service's contract says."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookapi.emulator import Emulator, Hook, PostedMessage
from hookapi.emulator._app import Message

from .conftest import RATE_HEADERS, HandClock, post, rate, send

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


async def test_a_post_answers_200_ok_and_is_recorded(
    emulator: Emulator, hook: Hook, clock: HandClock
) -> None:
    arrival = datetime(2026, 3, 1, 9, 30, 12, 500_000, tzinfo=UTC)
    clock.now = arrival.timestamp()
    response = await post(emulator, hook, "Deploy finished ✓")
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"].startswith("text/plain")
    assert rate(response) == (3, 5, 1, 2)
    assert emulator.messages(hook) == [
        PostedMessage(
            text="Deploy finished ✓",
            received_at=arrival,
            desktop="Ops",
            hook_id=hook.id,
            received_monotonic=clock.now,
        )
    ]


async def test_used_and_remaining_follow_each_post(emulator: Emulator, hook: Hook) -> None:
    seen = [rate(await post(emulator, hook, f"m{i}"))[2:] for i in range(3)]
    assert seen == [(1, 2), (2, 1), (3, 0)]
    quota = emulator.quota(hook)
    assert (quota.used_hour, quota.used_day, quota.remaining) == (3, 3, 0)
    assert (quota.remaining_hour, quota.remaining_day) == (0, 2)


@pytest.mark.parametrize(
    ("secret", "known_id"),
    [("0" * 64, True), ("ab", True), ("0" * 64, False)],
    ids=["wrong-secret", "short-secret", "unknown-id"],
)
async def test_wrong_credentials_answer_the_documented_401(
    emulator: Emulator, hook: Hook, secret: str, known_id: bool
) -> None:
    hook_id = hook.id if known_id else "35d7bef2-3d7e-11ec-bfa2-42010a200115"
    response = await send(
        emulator, "POST", f"/{hook_id}/{secret}/message", content=b'{"message":"x"}', headers=JSON
    )
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error", "error_description", "message"}
    assert body["error"] == "access_denied"
    assert all(isinstance(value, str) and value for value in body.values())
    assert rate(response) == (3, 5, 0, 3)
    assert emulator.messages(hook) == []
    assert emulator.quota(hook).used_hour == 0


async def test_another_hooks_secret_does_not_open_a_hook(emulator: Emulator, hook: Hook) -> None:
    other = emulator.create_hook("Sales")
    path = f"/{hook.id}/{other.secret}/message"
    response = await send(emulator, "POST", path, content=b'{"message":"x"}', headers=JSON)
    assert response.status_code == 401


async def test_secrets_are_compared_in_constant_time(
    emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert (await post(emulator, hook)).status_code == 200
    wrong = f"/{hook.id}/{'f' * 64}/message"
    assert (await send(emulator, "POST", wrong, headers=JSON)).status_code == 401
    unknown = f"/no-such-hook/{hook.secret}/message"
    assert (await send(emulator, "POST", unknown, headers=JSON)).status_code == 401
    # Every check, including the unknown id's, went through compare_digest on bytes.
    assert len(calls) == 3
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


async def test_a_non_ascii_secret_is_refused_not_crashed(emulator: Emulator, hook: Hook) -> None:
    response = await send(emulator, "POST", f"/{hook.id}/s%C3%A9cret%ED%A0%80/message")
    assert response.status_code == 401


BAD_BODIES: list[Any] = [
    pytest.param(b"{not json", JSON, "not valid JSON", id="not-json"),
    pytest.param(b"", JSON, "not valid JSON", id="empty-body"),
    pytest.param(b"\xff\xfe{}", JSON, "not valid JSON", id="not-utf8"),
    pytest.param(b'{"message": NaN}', JSON, "not valid JSON", id="nan"),
    pytest.param(b"[" * 5000 + b"]" * 5000, JSON, "not valid JSON", id="deep-nesting"),
    pytest.param(b"[" * 65 + b"]" * 65, JSON, "not valid JSON", id="one-level-too-deep"),
    pytest.param(b'["hello"]', JSON, "JSON object", id="array"),
    pytest.param(b'{"text": "hello"}', JSON, 'no "message"', id="missing-message"),
    pytest.param(b'{"message": 42}', JSON, "must be a string", id="int-message"),
    pytest.param(b'{"message": null}', JSON, "must be a string", id="null-message"),
    pytest.param(b'{"message": ""}', JSON, "must not be empty", id="empty-message"),
    pytest.param(b'{"message": " \\n\\t "}', JSON, "must not be empty", id="blank-message"),
    pytest.param(b'{"message": "\\ud800"}', JSON, "surrogate", id="lone-surrogate"),
    pytest.param(b'{"message": "x"}', {}, "Content-Type", id="no-content-type"),
    pytest.param(b'{"message": "x"}', {"Content-Type": "text/plain"}, "Content-Type", id="text"),
    pytest.param(
        b'{"message": "x"}',
        {"Content-Type": "application/json; charset=latin-1"},
        "UTF-8",
        id="latin-1",
    ),
]


@pytest.mark.parametrize(("content", "headers", "says"), BAD_BODIES)
async def test_an_invalid_request_answers_400_and_counts(
    emulator: Emulator, hook: Hook, content: bytes, headers: dict[str, str], says: str
) -> None:
    path = f"/{hook.id}/{hook.secret}/message"
    response = await send(emulator, "POST", path, content=content, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert says in body["error_description"]
    assert rate(response) == (3, 5, 1, 2)  # it reached the limiter, so it counts
    assert emulator.messages(hook) == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=UTF-8",
        "application/json;",
    ],
)
async def test_json_content_types_are_accepted(
    emulator: Emulator, hook: Hook, content_type: str
) -> None:
    body = b'{"message": "hi", "extra": [1, 2]}'
    path = f"/{hook.id}/{hook.secret}/message"
    response = await send(
        emulator, "POST", path, content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 200
    assert [m.text for m in emulator.messages(hook)] == ["hi"]


async def test_nesting_up_to_the_limit_is_accepted_and_brackets_in_strings_do_not_count(
    emulator: Emulator, hook: Hook
) -> None:
    # 64 levels in all: the object itself and 63 nested arrays. The limit is the emulator's own,
    # so the answer is the same on every interpreter (3.13's json parses what 3.11's refuses).
    deep = b'{"message": "\\"' + b"[{" * 200 + b'", "x": ' + b"[" * 63 + b"]" * 63 + b"}"
    path = f"/{hook.id}/{hook.secret}/message"
    response = await send(
        emulator, "POST", path, content=deep, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert [m.text for m in emulator.messages(hook)] == ['"' + "[{" * 200]


async def test_the_body_limit_is_exact(clock: HandClock) -> None:
    emulator = Emulator(max_body_bytes=100, clock=clock)
    hook = emulator.create_hook()
    prefix, suffix = b'{"message": "', b'"}'
    fits = prefix + b"x" * (100 - len(prefix) - len(suffix)) + suffix
    path = f"/{hook.id}/{hook.secret}/message"
    assert (await send(emulator, "POST", path, content=fits, headers=JSON)).status_code == 200
    response = await send(emulator, "POST", path, content=fits + b" ", headers=JSON)
    assert response.status_code == 400
    assert "larger than 100 bytes" in response.json()["error_description"]


async def test_a_streamed_body_is_bounded_too(clock: HandClock) -> None:
    emulator = Emulator(max_body_bytes=1000, clock=clock)
    hook = emulator.create_hook()
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for index in range(10_000):
            pulled.append(index)
            yield b'{"message": "' if index == 0 else b"x" * 100

    async with httpx.AsyncClient(transport=emulator.transport()) as http:
        response = await http.post(f"{hook.url}/message", content=endless(), headers=JSON)
    assert response.status_code == 400
    assert len(pulled) < 20  # the emulator stopped reading at the limit


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/favicon.ico",
        "/{id}",
        "/{id}/{secret}",
        "/{id}/{secret}/message/",
        "/{id}/{secret}/messages",
        "/{id}/{secret}/message/extra",
        "//{secret}/message",
        "/{id}//message",
    ],
)
async def test_an_unknown_path_answers_404(emulator: Emulator, hook: Hook, path: str) -> None:
    path = path.format(id=hook.id, secret=hook.secret)
    response = await send(emulator, "POST", path, content=b'{"message": "x"}', headers=JSON)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert rate(response) == (3, 5, 0, 3)
    assert emulator.messages(hook) == []


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@pytest.mark.parametrize("right_secret", [True, False])
async def test_another_method_answers_405_allow_post(
    emulator: Emulator, hook: Hook, method: str, right_secret: bool
) -> None:
    secret = hook.secret if right_secret else "x"
    response = await send(emulator, method, f"/{hook.id}/{secret}/message")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert rate(response) == (3, 5, 0, 3)
    assert emulator.quota(hook).used_hour == 0


async def test_a_query_string_is_ignored(emulator: Emulator, hook: Hook) -> None:
    path = f"/{hook.id}/{hook.secret}/message?debug=1"
    response = await send(emulator, "POST", path, content=b'{"message": "q"}', headers=JSON)
    assert response.status_code == 200


async def test_every_answer_carries_the_four_headers(emulator: Emulator, hook: Hook) -> None:
    message = f"/{hook.id}/{hook.secret}/message"
    requests: list[tuple[int | None, str, str, bytes, int]] = [
        (None, "POST", message, b'{"message": "a"}', 200),
        (None, "POST", message, b"oops", 400),
        (None, "POST", f"/{hook.id}/wrong/message", b'{"message": "a"}', 401),
        (None, "POST", "/nowhere", b"", 404),
        (None, "GET", message, b"", 405),
        (503, "POST", message, b'{"message": "b"}', 503),
        (500, "POST", message, b'{"message": "b"}', 500),
        (None, "POST", message, b'{"message": "c"}', 429),
    ]
    for fault, method, path, content, status in requests:
        if fault is not None:
            emulator.fail_next(fault)
        response = await send(emulator, method, path, content=content, headers=JSON)
        assert response.status_code == status
        assert all(response.headers[name].isdigit() for name in RATE_HEADERS)
        per_hour, per_day, used, remaining = rate(response)
        assert remaining == max(0, min(per_hour - used, per_day - used))
    assert emulator.quota(hook).used_hour == 3


async def test_a_bad_request_never_touches_another_hook(emulator: Emulator, hook: Hook) -> None:
    other = emulator.create_hook("Sales")
    await post(emulator, other, "before")
    before = emulator.quota(other)
    emulator.fail_next(500, hook=hook)
    path = f"/{hook.id}/{hook.secret}/message"
    for content in (b"garbage", b'{"message": 1}', b'{"message": "a"}', b'{"message": "b"}'):
        await send(emulator, "POST", path, content=content, headers=JSON)
    await send(emulator, "POST", f"/{hook.id}/{other.secret}/message", headers=JSON)
    await send(emulator, "POST", f"/{other.id}/{hook.secret}/message", headers=JSON)
    assert emulator.quota(hook).used_hour == 3
    assert emulator.quota(other) == before
    assert [m.text for m in emulator.messages(other)] == ["before"]
    assert [m.text for m in emulator.messages(hook)] == ["a"]  # "b" met the quota


async def test_logs_never_show_a_secret(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await post(emulator, hook)
    await send(emulator, "POST", f"/{hook.id}/{'e' * 64}/message", headers=JSON)
    await send(emulator, "POST", f"/{hook.secret}", headers=JSON)
    await send(emulator, "POST", f"/x/{hook.secret}/message/y", headers=JSON)
    emulator.fail_next("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        await post(emulator, hook)
    # Only the emulator's own records: this test's bare httpx client logs its URLs itself.
    ours = [record for record in caplog.records if record.name.startswith("hookapi")]
    text = "\n".join(record.getMessage() for record in ours)
    assert hook.secret not in text
    assert "e" * 64 not in text
    assert f"POST /{hook.id}/***/message -> 200" in text
    assert f"POST /{hook.id}/***/message -> 401" in text
    assert "POST /***/***/message/*** -> 404" in text
    assert "POST /*** -> 404" in text
    assert f"POST /{hook.id}/***/message -> connection dropped" in text


async def test_inspection_lists_hooks_desktops_and_messages(emulator: Emulator, hook: Hook) -> None:
    sales = emulator.create_hook("Sales")
    more_ops = emulator.create_hook("Ops")
    for target, text in ((hook, "1"), (sales, "2"), (more_ops, "3"), (hook, "4")):
        await post(emulator, target, text)
    assert emulator.hooks() == [hook, sales, more_ops]
    assert emulator.desktops() == ["Ops", "Sales"]
    assert [m.text for m in emulator.messages()] == ["1", "2", "3", "4"]
    assert [m.text for m in emulator.messages(hook.id)] == ["1", "4"]
    assert [m.desktop for m in emulator.messages()] == ["Ops", "Sales", "Ops", "Ops"]
    assert emulator.status_counts == {200: 4}
    with pytest.raises(KeyError, match="no hook with id 'nope'"):
        emulator.messages("nope")
    with pytest.raises(KeyError):
        emulator.quota("nope")


def test_a_hook_never_shows_its_secret() -> None:
    emulator = Emulator()
    hook = emulator.create_hook("Ops")
    assert len(hook.secret) == 64
    assert int(hook.secret, 16) >= 0
    assert len(hook.id) == 36
    assert hook.id.count("-") == 4
    assert hook.secret not in repr(hook)
    assert hook.secret not in str(hook)
    assert "secret='***'" in repr(hook)
    assert hook.url == f"http://emulator.localhost/{hook.id}/{hook.secret}"
    assert (
        hook.url_for("http://127.0.0.1:8000/") == f"http://127.0.0.1:8000/{hook.id}/{hook.secret}"
    )
    assert repr(emulator) == "<Emulator window='fixed' per_hour=1000 per_day=10000 hooks=1>"
    assert emulator.create_hook().desktop == "General"


def test_a_hook_may_have_a_given_id_and_secret() -> None:
    emulator = Emulator(base_url="http://127.0.0.1:9000")
    hook = emulator.create_hook("Ops", id="35d7bef2-3d7e-11ec-bfa2-42010a200115", secret="s" * 64)
    assert hook.url == f"http://127.0.0.1:9000/{hook.id}/{'s' * 64}"
    with pytest.raises(ValueError, match="already exists"):
        emulator.create_hook(id=hook.id)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"id": "a/b"}, "id must be"),
        ({"id": ""}, "id must be"),
        ({"secret": "../../etc"}, "secret must be"),
        ({"secret": "sp ace"}, "secret must be"),
        ({"desktop": " "}, "desktop"),
        ({"desktop": 3}, "desktop"),
    ],
)
def test_create_hook_refuses_unsafe_values(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        Emulator().create_hook(**options)
    assert "etc" not in str(caught.value)
    assert "ace" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"per_hour": 0}, "per_hour"),
        ({"per_day": True}, "per_day"),
        ({"window": "rolling"}, "window"),
        ({"fault_rate": 1.5}, "fault_rate"),
        ({"fault_rate": "0.1"}, "fault_rate"),
        ({"latency": -1}, "latency"),
        ({"latency": float("nan")}, "latency"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
    ],
)
def test_the_emulator_refuses_bad_options(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Emulator(**options)


def test_settings_are_readable() -> None:
    emulator = Emulator(per_hour=7, per_day=70, window="sliding", max_body_bytes=10)
    assert (emulator.per_hour, emulator.per_day, emulator.window) == (7, 70, "sliding")
    assert emulator.max_body_bytes == 10
    assert json.loads(json.dumps(emulator.status_counts)) == {}


async def test_the_app_speaks_the_lifespan_protocol_and_refuses_websockets() -> None:
    emulator = Emulator()
    incoming: list[Message] = [
        {"type": "lifespan.startup"},
        {"type": "lifespan.something.new"},
        {"type": "lifespan.shutdown"},
    ]
    sent: list[str] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send_message(message: Message) -> None:
        sent.append(message["type"])

    await emulator.app({"type": "lifespan"}, receive, send_message)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(ValueError, match="HTTP only, not 'websocket'"):
        await emulator.app({"type": "websocket"}, receive, send_message)


PATHS = st.one_of(
    st.just("/{id}/{secret}/message"),
    st.just("/{id}/{other}/message"),
    st.text(max_size=40).map(lambda text: "/" + text),
    st.lists(st.text(max_size=8), max_size=5).map(lambda parts: "/".join(["", *parts])),
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=50).map(lambda text: json.dumps({"message": text}).encode()),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    ).map(lambda value: json.dumps({"message": value}).encode()),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "HEAD", "BREW"]),
    path=PATHS,
    content_type=st.sampled_from([b"application/json", b"application/json; charset=x", b"\xff"]),
    chunks=st.lists(BODIES, min_size=1, max_size=3),
)
def test_no_request_crashes_the_app_or_touches_another_hook(
    method: str, path: str, content_type: bytes, chunks: list[bytes]
) -> None:
    emulator = Emulator(per_hour=2, max_body_bytes=200, clock=lambda: 0.0)
    hook, other = emulator.create_hook(), emulator.create_hook()
    path = path.replace("{id}", hook.id).replace("{secret}", hook.secret)
    path = path.replace("{other}", other.secret)
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send_message(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-type", content_type)],
    }
    anyio.run(emulator.app, scope, receive, send_message)
    assert sent[0]["status"] in {200, 400, 401, 404, 405}
    assert all(dict(sent[0]["headers"])[name.encode()].isdigit() for name in RATE_HEADERS)
    assert emulator.quota(other).used_hour == 0
    assert emulator.messages(other) == []
