"""The test server itself: it starts, answers, stops and comes back on the same port."""

from __future__ import annotations

import pytest

from .redis_server import RedisServer, ping

pytestmark = pytest.mark.redis


def test_the_server_answers_and_comes_back(own_redis_server: RedisServer) -> None:
    assert ping(own_redis_server.port)
    own_redis_server.stop()
    assert not own_redis_server.running
    assert not ping(own_redis_server.port)
    own_redis_server.start()
    assert ping(own_redis_server.port)
    own_redis_server.restart()
    assert ping(own_redis_server.port)
