"""RedisQuota at its edges: ``available`` in raise mode, and a password Redis refuses."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions

from hookapi import QuotaUnavailableError, RedisQuota
from hookapi._quota import Reservation
from hookapi._redis import _store

from .redis_server import RedisServer
from .test_redis_quota import KEY, raw_client

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncio on real time: redis-py's own retries and backoff run as they would in use."""
    return ("asyncio", {})


@pytest.fixture
async def locked_server(own_redis_server: RedisServer) -> RedisServer:
    """A server that asks for a password ("right-password")."""
    async with raw_client(own_redis_server.url) as raw:
        await raw.config_set("requirepass", "right-password")
    return own_redis_server


async def test_available_is_false_while_raise_mode_refuses(
    own_redis_server: RedisServer,
) -> None:
    async with RedisQuota(own_redis_server.url, on_unavailable="raise") as quota:
        hook = quota.hook(KEY)
        reservation = await hook.reserve()
        assert isinstance(reservation, Reservation)
        await hook.refund(reservation)
        assert quota.available
        own_redis_server.stop()
        for _ in range(2):
            with pytest.raises(QuotaUnavailableError):
                await hook.reserve()
            assert not quota.available
        own_redis_server.start()
        await hook.reserve()
        assert quota.available


async def test_a_refused_password_on_a_given_client_is_named(locked_server: RedisServer) -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=locked_server.port, password="wrong-pw")
    try:
        async with RedisQuota(client, on_unavailable="raise") as quota:
            with pytest.raises(QuotaUnavailableError) as caught:
                await quota.hook(KEY).reserve()
            assert not quota.available
    finally:
        await client.aclose()
    text = str(caught.value)
    assert "refused this client's credentials: AuthenticationError" in text
    assert "check the password" in text
    assert "TimeoutError" not in text
    assert "wrong-pw" not in text + repr(caught.value.__cause__)


async def test_a_refused_password_in_local_mode_is_named_in_the_warning(
    locked_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=locked_server.port, password="wrong-pw")
    try:
        async with RedisQuota(client) as quota:
            with caplog.at_level(logging.WARNING, logger="hookapi"):
                await quota.hook(KEY).reserve()  # paced locally
            assert not quota.available
    finally:
        await client.aclose()
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "refused this client's credentials: AuthenticationError" in record.getMessage()


def test_a_refusal_is_found_anywhere_in_a_short_chain() -> None:
    wrongpass = redis.exceptions.ResponseError("WRONGPASS invalid username-password pair")
    timeout = TimeoutError()
    timeout.__context__ = wrongpass
    assert _store._refusal(timeout) is wrongpass
    assert _store._refusal(redis.exceptions.ResponseError("ERR unknown command")) is None
    looped = ConnectionError()
    looped.__context__ = OSError()
    looped.__context__.__context__ = looped  # a cycle ends the search, found or not
    assert _store._refusal(looped) is None
