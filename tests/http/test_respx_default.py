"""respx's default mocking still sees the requests of a client on its default transport.

Users test bots with ``respx.mock`` and a client built with no ``transport=``; that must keep
working whatever the default pool does underneath, on both backends.
"""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from hookapi import AsyncHookClient, ServiceUnavailableError

pytestmark = pytest.mark.anyio

BASE = "https://hooks.example.test/v1"
HOOK = "hook-1"
SECRET = "k" * 40
URL = f"{BASE}/{HOOK}/{SECRET}/message"
HEADERS = {"X-Rate-Limit-Remaining": "41", "X-Rate-Limit-Used": "59"}


async def test_respx_mock_intercepts_the_default_transport() -> None:
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(URL).respond(200, text="ok", headers=HEADERS)
        async with AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=BASE) as client:
            result = await client.post_message("hello")
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.content) == {"message": "hello"}
    assert result.rate_limit is not None
    assert result.rate_limit.remaining == 41


async def test_respx_answers_drive_the_retry_policy_on_the_default_transport() -> None:
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(URL).mock(side_effect=[httpx.Response(503)] * 4)
        async with AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=BASE) as client:
            with pytest.raises(ServiceUnavailableError) as caught:
                await client.post_message("hello", deadline=600)
    assert route.call_count == 4  # the default policy's max_attempts
    assert caught.value.attempts == 4
