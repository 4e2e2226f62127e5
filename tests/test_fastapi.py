"""hookapi.fastapi: the lifespan, the dependency and the error answers, on asyncio and trio."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request

import hookapi
from hookapi.emulator import Emulator, Hook
from hookapi.fastapi import (
    DEFAULT_RETRY_AFTER,
    OUTBOX_STATE_KEY,
    STATE_KEY,
    AsyncHookClientDep,
    OutboxDep,
    add_exception_handlers,
    error_response,
    hook_lifespan,
)
from hookapi.testing import assert_posted

from .conftest import BASE, HOOK_ID

pytestmark = pytest.mark.anyio

URL = "https://hooks.example.test/v1/***/message"
#: An error's own text, which the caller must never see.
UPSTREAM_TEXT = "The upstream said <h1>502 Bad Gateway</h1>"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(per_hour=100, per_day=1000)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Ops")


def make_app(emulator: Emulator, hook: Hook, **options: Any) -> FastAPI:
    options.setdefault("url", hook.url)
    options.setdefault("transport", emulator.transport())
    options.setdefault("retry", hookapi.RetryPolicy.disabled())
    app = FastAPI(lifespan=hook_lifespan(**options))
    add_exception_handlers(app)

    @app.post("/notify")
    async def notify(text: str, hook: AsyncHookClientDep) -> dict[str, int]:
        result = await hook.post_message(text)
        return {"attempts": result.attempts, "client": id(hook)}

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


async def start_failure(app: FastAPI) -> BaseException:
    """The error that stops the app's start (unwrapped: on trio it arrives in a group)."""
    with pytest.raises(BaseException) as caught:
        async with serving(app):
            pass
    error = caught.value
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def test_one_client_serves_every_request_and_closes_with_the_app(
    emulator: Emulator, hook: Hook
) -> None:
    seen: list[hookapi.AsyncHookClient] = []
    app = make_app(emulator, hook)

    @app.get("/client")
    async def client(hook: AsyncHookClientDep) -> None:
        seen.append(hook)

    async with serving(app) as http:
        first = await http.post("/notify", params={"text": "one"})
        second = await http.post("/notify", params={"text": "two"})
        await http.get("/client")
        open_while_serving = not seen[0].is_closed
    assert open_while_serving
    assert first.status_code == second.status_code == 200
    assert first.json()["client"] == second.json()["client"] == id(seen[0])
    assert seen[0].is_closed
    assert_posted(emulator, hook, ["one", "two"])


async def test_the_apps_own_lifespan_runs_inside_and_keeps_its_state(
    emulator: Emulator, hook: Hook
) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        events.append("own start")
        yield {"greeting": "hello"}
        events.append("own stop")

    app = FastAPI(lifespan=hook_lifespan(own, url=hook.url, transport=emulator.transport()))

    @app.get("/state")
    async def state(request: Request, hook: AsyncHookClientDep) -> dict[str, object]:
        events.append(f"request, client open: {not hook.is_closed}")
        return {"greeting": request.state.greeting, "has_client": hasattr(request.state, STATE_KEY)}

    async with serving(app) as http:
        answer = await http.get("/state")
    assert answer.json() == {"greeting": "hello", "has_client": True}
    assert events == ["own start", "request, client open: True", "own stop"]


async def test_an_own_lifespan_that_yields_nothing(emulator: Emulator, hook: Hook) -> None:
    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(lifespan=hook_lifespan(own, url=hook.url, transport=emulator.transport()))

    @app.post("/notify")
    async def notify(hook: AsyncHookClientDep) -> int:
        return (await hook.post_message("hi")).attempts

    async with serving(app) as http:
        assert (await http.post("/notify")).json() == 1


async def test_an_own_lifespan_may_not_take_the_state_key(emulator: Emulator, hook: Hook) -> None:
    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        yield {STATE_KEY: "mine"}

    app = FastAPI(lifespan=hook_lifespan(own, url=hook.url, transport=emulator.transport()))
    error = await start_failure(app)
    assert isinstance(error, RuntimeError)
    assert str(error) == "The app's own lifespan yields 'hook_client', which hook_lifespan sets."


async def test_the_client_comes_from_the_environment_by_default(
    emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_HOOK", hook.url)
    retry = hookapi.RetryPolicy(max_attempts=2)
    app = FastAPI(
        lifespan=hook_lifespan(env_var="BOT_HOOK", transport=emulator.transport(), retry=retry)
    )

    @app.get("/policy")
    async def policy(hook: AsyncHookClientDep) -> int:
        assert hook.retry_policy is retry
        return hook.retry_policy.max_attempts

    async with serving(app) as http:
        assert (await http.get("/policy")).json() == 2


async def test_the_url_may_come_from_the_file_hookapi_url_file_names(
    emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "hook-url"
    path.write_text(f"\n{hook.url}\n")
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    monkeypatch.setenv("HOOKAPI_URL_FILE", str(path))
    app = make_app(emulator, hook, url=None)
    async with serving(app) as http:
        assert (await http.post("/notify", params={"text": "hi"})).status_code == 200
    assert_posted(emulator, hook, ["hi"])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "which cannot be read: No such file or directory."),
        (b"", "which must hold one non-blank line: the hook URL."),
        (b"\xff", "which is not UTF-8 text."),
    ],
)
async def test_a_bad_hookapi_url_file_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "hook-url"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    monkeypatch.setenv("HOOKAPI_URL_FILE", str(path))
    error = await start_failure(FastAPI(lifespan=hook_lifespan()))
    assert isinstance(error, hookapi.InvalidInputError)
    assert str(error) == f"HOOKAPI_URL_FILE names {path}, {problem}"


async def test_a_missing_url_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKAPI_URL", raising=False)
    monkeypatch.delenv("HOOKAPI_URL_FILE", raising=False)
    error = await start_failure(FastAPI(lifespan=hook_lifespan()))
    assert isinstance(error, hookapi.InvalidInputError)
    assert str(error) == "The environment variable HOOKAPI_URL is not set."


async def test_the_dependency_without_the_lifespan_says_what_is_missing() -> None:
    app = FastAPI()

    @app.get("/")
    async def root(hook: AsyncHookClientDep) -> None:
        raise AssertionError("never reached")

    async with serving(app) as http:
        with pytest.raises(RuntimeError, match=r"create the app with lifespan=hook_lifespan\(\)"):
            await http.get("/")


async def test_the_callers_empty_text_is_422_in_fastapis_own_shape(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hookapi")
    app = make_app(emulator, hook)

    @app.post("/typed")
    async def typed(count: int) -> None:
        raise AssertionError("never reached")

    async with serving(app) as http:
        answer = await http.post("/notify", params={"text": " "})
        fastapis_own = await http.post("/typed", params={"count": "many"})
    assert answer.status_code == fastapis_own.status_code == 422
    assert answer.json() == {
        "detail": [
            {
                "type": "value_error",
                "loc": ["body"],
                "msg": "The message must not be empty or only whitespace.",
                "input": None,
            }
        ]
    }
    # The same keys as FastAPI's own validation errors, so a caller reads both alike.
    (own,) = fastapis_own.json()["detail"]
    assert set(answer.json()["detail"][0]) <= set(own)
    assert set(fastapis_own.json()) == set(answer.json()) == {"detail"}
    # The caller's own mistake is no warning for the app's operator.
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Answered")]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "Answered 422 for the caller's input: InvalidInputError: The message must not be empty "
        "or only whitespace. The message was not sent."
    )


async def test_a_refused_hook_is_a_misconfiguration_without_the_secret(
    emulator: Emulator, hook: Hook
) -> None:
    wrong = "f" * 64
    url = f"{hook.base_url}/{hook.id}/{wrong}"
    async with serving(make_app(emulator, hook, url=url)) as http:
        answer = await http.post("/notify", params={"text": "hi"})
    assert answer.status_code == 500
    assert answer.json() == {
        "detail": "This service's connection to the chat service is misconfigured.",
        "error": "hook_misconfigured",
        "delivery": "rejected",
    }
    assert wrong not in answer.text
    assert hook.id not in answer.text


async def test_the_services_quota_answer_is_429_with_retry_after(
    emulator: Emulator, hook: Hook
) -> None:
    emulator.fail_next(429, retry_after=7.2)
    async with serving(make_app(emulator, hook)) as http:
        answer = await http.post("/notify", params={"text": "hi"})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "8"
    assert answer.json() == {
        "detail": "Too many messages were sent to the chat service; try again later.",
        "error": "rate_limited",
        "delivery": "rejected",
    }


def hostile_page(status: int, secret: str) -> httpx.Response:
    """A proxy's own error page that repeats the URL it failed on, secret and all."""
    url = f"{BASE}/{HOOK_ID}/{secret}/message"
    page = (
        f"<html><head><title>{status} Proxy Error</title></head><body><h1>Proxy Error</h1>"
        f"<p>The upstream {url} (hooks.example.test) did not answer.</p></body></html>"
    )
    headers = {"Retry-After": "42"} if status == 503 else {}
    return httpx.Response(status, html=page, headers=headers)


def hostile_app(router: respx.MockRouter, message_url: str, **handlers: Any) -> FastAPI:
    app = FastAPI(
        lifespan=hook_lifespan(
            url=message_url,
            transport=httpx.MockTransport(router.async_handler),
            retry=hookapi.RetryPolicy.disabled(),
        )
    )
    add_exception_handlers(app, **handlers)

    @app.post("/notify")
    async def notify(text: str, hook: AsyncHookClientDep) -> None:
        await hook.post_message(text)

    return app


LEAKS = ("hooks.example.test", HOOK_ID, "Proxy Error", "<html", "upstream", "/v1/")


@pytest.mark.parametrize(
    ("upstream", "status", "code", "retry_after"),
    [
        (503, 503, "hook_unavailable", "42"),
        (502, 502, "hook_failed", None),
        (500, 502, "hook_failed", None),
        (404, 500, "hook_misconfigured", None),
        (400, 502, "hook_refused", None),
    ],
)
async def test_a_hostile_upstream_page_never_reaches_the_caller(
    router: respx.MockRouter,
    message_url: str,
    secret: str,
    caplog: pytest.LogCaptureFixture,
    upstream: int,
    status: int,
    code: str,
    retry_after: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="hookapi")
    router.post(f"/{HOOK_ID}/{secret}/message").mock(return_value=hostile_page(upstream, secret))
    async with serving(hostile_app(router, message_url)) as http:
        answer = await http.post("/notify", params={"text": "hi"})
    assert answer.status_code == status
    assert answer.headers.get("Retry-After") == retry_after
    assert answer.json()["error"] == code
    assert set(answer.json()) == {"detail", "error", "delivery"}
    for leak in (*LEAKS, secret):
        assert leak not in answer.text, leak
    # The app's operator gets the whole error, redacted, at WARNING.
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Answered")]
    assert record.levelno == logging.WARNING
    assert record.name == "hookapi"
    logged = record.getMessage()
    assert logged.startswith(f"Answered {status} {code} for ")
    assert f"{BASE}/{HOOK_ID}/***/message" in logged
    assert str(upstream) in logged
    assert secret not in logged


async def test_a_lost_connection_says_the_message_may_have_been_posted(
    router: respx.MockRouter, message_url: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    route = router.post(f"/{HOOK_ID}/{secret}/message")
    route.mock(side_effect=httpx.RemoteProtocolError(f"peer closed {message_url}"))
    async with serving(hostile_app(router, message_url)) as http:
        answer = await http.post("/notify", params={"text": "hi"})
    assert answer.status_code == 502
    assert answer.json() == {
        "detail": "The chat service could not be reached; try again later. "
        "The message may or may not have been posted.",
        "error": "hook_unreachable",
        "delivery": "unknown",
    }
    assert [r.levelno for r in caplog.records if r.getMessage().startswith("Answered")] == [
        logging.WARNING
    ]
    assert secret not in caplog.text


async def test_expose_details_shows_the_redacted_error_for_development(
    router: respx.MockRouter, message_url: str, secret: str
) -> None:
    router.post(f"/{HOOK_ID}/{secret}/message").mock(return_value=hostile_page(503, secret))
    async with serving(hostile_app(router, message_url, expose_details=True)) as http:
        answer = await http.post("/notify", params={"text": "hi"})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "42"
    body = answer.json()
    assert body["error"] == "hook_unavailable"
    details = body["hook_error"]
    assert details["type"] == "ServiceUnavailableError"
    assert details["status_code"] == 503
    assert details["url"] == f"{BASE}/{HOOK_ID}/***/message"
    assert details["attempts"] == 1
    assert "Proxy Error" in details["body"]
    assert "503" in details["message"]
    assert secret not in answer.text


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # no I/O: one backend is enough
async def test_expose_details_on_error_response_itself() -> None:
    error = hookapi.APITimeoutError("POST timed out", url=URL, attempts=2)
    hidden = json.loads(bytes(error_response(error).body))
    shown = json.loads(bytes(error_response(error, expose_details=True).body))
    assert "hook_error" not in hidden
    assert "hooks.example.test" not in json.dumps(hidden)
    assert shown["hook_error"] == {
        "type": "APITimeoutError",
        "message": str(error),
        "attempts": 2,
        "url": URL,
    }
    assert {k: v for k, v in shown.items() if k != "hook_error"} == hidden


def _status_error(cls: type[hookapi.APIStatusError], status: int, **extra: Any) -> Exception:
    return cls(UPSTREAM_TEXT, url=URL, status_code=status, **extra)


ANSWERS = [
    (_status_error(hookapi.RateLimitError, 429, retry_after=2.1), 429, "rate_limited", "3"),
    (_status_error(hookapi.RateLimitError, 429), 429, "rate_limited", "60"),
    (
        _status_error(hookapi.ServiceUnavailableError, 503, retry_after=30),
        503,
        "hook_unavailable",
        "30",
    ),
    (_status_error(hookapi.ServiceUnavailableError, 503), 503, "hook_unavailable", None),
    (hookapi.QuotaUnavailableError(UPSTREAM_TEXT), 503, "hook_unavailable", None),
    (hookapi.APITimeoutError(UPSTREAM_TEXT, url=URL), 504, "hook_timeout", None),
    (hookapi.APIConnectionError(UPSTREAM_TEXT, url=URL), 502, "hook_unreachable", None),
    (_status_error(hookapi.AuthenticationError, 401), 500, "hook_misconfigured", None),
    (_status_error(hookapi.PermissionDeniedError, 403), 500, "hook_misconfigured", None),
    (_status_error(hookapi.NotFoundError, 404), 500, "hook_misconfigured", None),
    (hookapi.InsecureURLError(UPSTREAM_TEXT, netloc="x:80"), 500, "hook_misconfigured", None),
    (_status_error(hookapi.InternalServerError, 500), 502, "hook_failed", None),
    (_status_error(hookapi.ServerError, 502), 502, "hook_failed", None),
    (hookapi.APIError(UPSTREAM_TEXT, url=URL), 502, "hook_failed", None),
    (_status_error(hookapi.BadRequestError, 400), 502, "hook_refused", None),
    (_status_error(hookapi.APIStatusError, 418), 502, "hook_refused", None),
    (hookapi.ClientClosedError(UPSTREAM_TEXT), 503, "shutting_down", None),
    (hookapi.OutboxClosedError(UPSTREAM_TEXT), 503, "shutting_down", None),
    (hookapi.OutboxFullError(UPSTREAM_TEXT), 503, "outbox_full", str(DEFAULT_RETRY_AFTER)),
    (hookapi.MessageDroppedError(UPSTREAM_TEXT), 503, "message_dropped", None),
    (
        hookapi.StoreUnavailableError(UPSTREAM_TEXT, path="redis://redis:6379"),
        503,
        "outbox_unavailable",
        None,
    ),
    (hookapi.StoreError(UPSTREAM_TEXT, path="/var/lib/x.sqlite"), 500, "internal_error", None),
    (hookapi.StoreInUseError(UPSTREAM_TEXT, path="/var/lib/x"), 500, "internal_error", None),
    (hookapi.LeaseLostError(UPSTREAM_TEXT, path="redis://redis:6379"), 500, "internal_error", None),
    (
        hookapi.StoreHookMismatchError(UPSTREAM_TEXT, path="/var/lib/x", stored_hook=URL, hook=URL),
        500,
        "internal_error",
        None,
    ),
    (hookapi.WrongEventLoopError(UPSTREAM_TEXT), 500, "internal_error", None),
    (hookapi.HookAPIError(UPSTREAM_TEXT), 500, "internal_error", None),
]


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    ANSWERS,
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # no I/O: one backend is enough
async def test_each_error_has_its_status_and_code(
    error: hookapi.HookAPIError, status: int, code: str, retry_after: str | None
) -> None:
    response = error_response(error)
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    body = json.loads(bytes(response.body))
    assert body["error"] == code
    assert body["delivery"] == error.delivery.value
    # Nothing of the error's own text (its URL, its message, a store's path) is shown.
    text = bytes(response.body).decode()
    for own in (URL, "hooks.example.test", UPSTREAM_TEXT, "Bad Gateway", "/var/lib"):
        assert own not in text


def test_the_table_names_every_error_class_of_the_package() -> None:
    classes = {
        value
        for value in vars(hookapi).values()
        if isinstance(value, type) and issubclass(value, hookapi.HookAPIError)
    }
    assert classes - {hookapi.InvalidInputError} == {type(error) for error, *_ in ANSWERS}


def make_outbox_app(emulator: Emulator, hook: Hook, **options: Any) -> FastAPI:
    app = FastAPI(lifespan=hook_lifespan(url=hook.url, transport=emulator.transport(), **options))
    add_exception_handlers(app)

    @app.post("/notify", status_code=202)
    async def notify(text: str, outbox: OutboxDep) -> dict[str, str]:
        receipt = await outbox.put(text)
        return {"state": receipt.state.value}

    return app


async def test_the_outbox_delivers_what_handlers_put_and_drains_on_shutdown(
    emulator: Emulator, hook: Hook
) -> None:
    seen: list[hookapi.Outbox] = []
    app = make_outbox_app(emulator, hook, outbox=True)

    @app.get("/outbox")
    async def outbox(request: Request, outbox: OutboxDep) -> None:
        seen.append(outbox)
        assert getattr(request.state, OUTBOX_STATE_KEY) is outbox

    async with serving(app) as http:
        answers = [await http.post("/notify", params={"text": f"m{i}"}) for i in range(5)]
        await http.get("/outbox")
    assert [a.status_code for a in answers] == [202] * 5
    # Handlers returned at once; the outbox delivered everything, in order, by shutdown.
    assert_posted(emulator, hook, [f"m{i}" for i in range(5)])
    assert seen[0].closed


async def test_an_outbox_factory_chooses_the_outboxs_options(
    emulator: Emulator, hook: Hook
) -> None:
    made: list[hookapi.Outbox] = []

    def factory(client: hookapi.AsyncHookClient) -> hookapi.Outbox:
        made.append(hookapi.Outbox(client, max_size=1, on_full="raise"))
        return made[-1]

    app = make_outbox_app(emulator, hook, outbox=factory)
    async with serving(app) as http:
        answer = await http.post("/notify", params={"text": "  "})
    assert len(made) == 1
    assert answer.status_code == 422  # the caller's blank text, refused before queueing


async def test_an_outbox_factory_must_return_an_outbox(emulator: Emulator, hook: Hook) -> None:
    app = make_outbox_app(emulator, hook, outbox=lambda client: client)
    error = await start_failure(app)
    assert isinstance(error, hookapi.InvalidInputError)
    assert "returned AsyncHookClient, not an Outbox" in str(error)


async def test_the_outbox_dependency_without_the_outbox_says_what_is_missing(
    emulator: Emulator, hook: Hook
) -> None:
    app = make_outbox_app(emulator, hook)
    async with serving(app) as http:
        with pytest.raises(RuntimeError, match="hook_lifespan\\(outbox=True\\)"):
            await http.post("/notify", params={"text": "x"})


async def test_messages_an_outage_kept_from_delivery_are_a_warning_at_shutdown(
    emulator: Emulator, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookapi")
    app = make_outbox_app(emulator, hook, outbox=True)
    emulator.fail_next(503, times=10_000)  # down for longer than the outbox drains
    async with LifespanManager(app, shutdown_timeout=None) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            for i in range(4):
                assert (await http.post("/notify", params={"text": f"m{i}"})).status_code == 202
    (record,) = [r for r in caplog.records if "undelivered" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "closed with 4 message(s) undelivered" in record.getMessage()
    assert "lost when this process ends" in record.getMessage()
    assert hook.secret not in record.getMessage()
