"""Posting a message: the request on the wire, the result, and the client's lifecycle."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest
import respx

import hookapi
from hookapi import AsyncHookClient, ClientClosedError, PostResult, RateLimit
from hookapi._http import ConnectionPool

from .conftest import BASE, HOOK_ID, ClientFactory, rate_headers

pytestmark = pytest.mark.anyio


async def test_posts_json_to_the_message_url(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, secret: str
) -> None:
    route = router.post(message_url).respond(200, text="ok", headers=rate_headers(41))
    async with make_client() as client:
        result = await client.post_message("Hello, Desktop ✓")
    request = route.calls.last.request
    assert route.call_count == 1  # the route matched the real URL, secret included ...
    assert request.url == message_url.replace(secret, "***")  # ... which left with the call
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"hookapi/{hookapi.__version__}"
    assert request.headers["host"] == "hooks.example.test"
    assert request.headers["content-length"] == str(len(request.content))
    assert json.loads(request.content) == {"message": "Hello, Desktop ✓"}
    assert result.status_code == 200
    assert result.attempts == 1
    assert result.rate_limit == RateLimit(per_hour=100, per_day=1000, used=59, remaining=41)
    assert client.rate_limit == result.rate_limit


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_is_success(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, status: int
) -> None:
    router.post(message_url).respond(status)
    async with make_client() as client:
        result = await client.post_message("hi")
    assert result == PostResult(status_code=status, attempts=1, rate_limit=None, elapsed=0.0)
    assert client.rate_limit is None


async def test_result_elapsed_counts_waits(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    router.post(message_url).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "7"}), httpx.Response(200)]
    )
    async with make_client() as client:
        result = await client.post_message("hi")
    assert result.attempts == 2
    assert result.elapsed == pytest.approx(7.0)


async def test_rate_limit_keeps_last_seen_when_headers_vanish(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    router.post(message_url).mock(
        side_effect=[httpx.Response(200, headers=rate_headers(10)), httpx.Response(200)]
    )
    async with make_client() as client:
        await client.post_message("one")
        second = await client.post_message("two")
    assert second.rate_limit is None
    assert client.rate_limit is not None
    assert client.rate_limit.remaining == 10


async def test_from_url_accepts_the_copied_hook_url(
    router: respx.MockRouter, secret: str, message_url: str
) -> None:
    route = router.post(message_url).respond(200, text="ok")
    transport = httpx.MockTransport(router.async_handler)
    for url in (
        f"{BASE}/{HOOK_ID}/{secret}",
        message_url,
        f"{message_url}/",
        f" {BASE}/{HOOK_ID}/{secret}/ ",
    ):
        async with AsyncHookClient.from_url(url, transport=transport) as client:
            await client.post_message("hi")
            assert client.hook_id == HOOK_ID
            assert client.url == f"{BASE}/{HOOK_ID}/***/message"
    assert route.call_count == 4


async def test_from_env_reads_hookapi_url(
    router: respx.MockRouter, secret: str, message_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = router.post(message_url).respond(200)
    monkeypatch.setenv("HOOKAPI_URL", f"{BASE}/{HOOK_ID}/{secret}")
    async with AsyncHookClient.from_env(transport=httpx.MockTransport(router.async_handler)) as c:
        await c.post_message("from env")
    assert route.called


async def test_base_url_at_the_root(router: respx.MockRouter, secret: str) -> None:
    route = router.post(f"https://root.example.test/{HOOK_ID}/{secret}/message").respond(200)
    transport = httpx.MockTransport(router.async_handler)
    async with AsyncHookClient(
        hook_id=HOOK_ID, secret=secret, base_url="https://root.example.test/", transport=transport
    ) as client:
        await client.post_message("hi")
        assert (
            repr(client)
            == f"<AsyncHookClient base_url='https://root.example.test' hook_id='{HOOK_ID}'>"
        )
    assert route.called


async def test_respx_mocks_the_default_transport(secret: str, message_url: str) -> None:
    # respx patches httpcore's connections, underneath the default pool: users' tests can
    # mock the service this way without passing a transport.
    with respx.mock(assert_all_called=True) as mock:
        mock.post(message_url).respond(200, text="ok", headers=rate_headers(3))
        async with AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=BASE) as client:
            result = await client.post_message("hi")
    assert result.rate_limit is not None
    assert result.rate_limit.remaining == 3


async def test_closed_client_refuses_to_post(make_client: ClientFactory) -> None:
    client = make_client()
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.is_closed
    with pytest.raises(ClientClosedError, match="closed"):
        await client.post_message("late")
    with pytest.raises(ClientClosedError):
        async with client:
            pass


class _Recorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.closed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="ok")

    async def aclose(self) -> None:
        self.closed += 1


async def test_an_injected_transport_stays_open(secret: str) -> None:
    inner = _Recorder()
    async with AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=BASE, transport=inner) as c:
        await c.post_message("hi")
    assert inner.closed == 0


async def test_the_default_transport_is_closed_with_the_client(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[bool] = []
    original = ConnectionPool.aclose

    async def spy(self: ConnectionPool) -> None:
        closed.append(True)
        await original(self)

    monkeypatch.setattr(ConnectionPool, "aclose", spy)
    client = AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=BASE)
    await client.aclose()
    await client.aclose()
    assert closed == [True]


async def test_concurrent_posts_share_one_client(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(200)
    async with make_client() as client, anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(client.post_message, f"message {i}")
    bodies = sorted(json.loads(call.request.content)["message"] for call in route.calls)
    assert bodies == sorted(f"message {i}" for i in range(50))


def test_client_can_be_built_outside_an_event_loop(secret: str) -> None:
    client = AsyncHookClient(hook_id=HOOK_ID, secret=secret, base_url=BASE)
    assert client.retry_policy == hookapi.RetryPolicy()
    assert secret not in repr(client)


async def test_a_custom_user_agent_is_sent(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    route = router.post(message_url).respond(200)
    async with make_client(user_agent="release-bot/2.1") as client:
        await client.post_message("hi")
    assert route.calls.last.request.headers["user-agent"] == "release-bot/2.1"
