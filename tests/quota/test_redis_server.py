"""The test server itself: it starts, answers, stops and comes back on the same port."""

from __future__ import annotations

import pytest

from . import redis_server
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


def test_without_a_binary_the_tests_skip_or_fail_when_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("os.access", lambda path, mode: False)
    monkeypatch.delenv(redis_server.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        redis_server.redis_server_binary()
    monkeypatch.setenv(redis_server.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="HOOKAPI_REQUIRE_REDIS=1 requires it"):
        redis_server.redis_server_binary()
