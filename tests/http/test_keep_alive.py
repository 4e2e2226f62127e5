"""Idle keep-alive: the pool retires a connection before the server's ``Keep-Alive`` timeout."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import httpx
import pytest

from hookapi import ConnectionPool
from hookapi._http import reuse_within

from .test_attempt_timeout import serving

pytestmark = [pytest.mark.anyio, pytest.mark.socket]


def answering(
    keep_alive: bytes, connections: list[int]
) -> Callable[[anyio.abc.ByteStream], Awaitable[None]]:
    async def handle(stream: anyio.abc.ByteStream) -> None:
        connections.append(1)
        while True:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + keep_alive + b"\r\nok")

    return handle


async def _get_twice(url: str, idle: float) -> None:
    async with ConnectionPool(keepalive_expiry=5.0) as pool:
        for _ in range(2):
            response = await pool.handle_async_request(httpx.Request("GET", url))
            await response.aread()
            await response.aclose()
            await anyio.sleep(idle)


@pytest.mark.parametrize(
    ("keep_alive", "idle", "opened"),
    [
        (b"Keep-Alive: timeout=2, max=100\r\n", 1.5, 2),  # the server closes at 2 s: retired
        (b"Keep-Alive: timeout=2, max=100\r\n", 0.5, 1),  # well within: reused
        (b"Keep-Alive: timeout=60\r\n", 4.0, 1),  # the pool's own 5 s still applies
        (b"", 4.0, 1),
    ],
)
async def test_a_connection_is_retired_before_the_servers_keep_alive_timeout(
    keep_alive: bytes, idle: float, opened: int
) -> None:
    connections: list[int] = []
    async with serving(answering(keep_alive, connections)) as url:
        await _get_twice(url, idle)
    assert len(connections) == opened


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (b"timeout=5", 4.0),
        (b"max=100, Timeout=5", 4.0),
        (b'timeout="1"', 0.5),
        (b"timeout=0", 0.0),
        (b"timeout=soon", math.inf),
        (b"timeout=-3", math.inf),
        (b"timeout=nan", math.inf),
        (b"max=100", math.inf),
    ],
)
def test_the_keep_alive_header_is_read_leniently(header: bytes, seconds: float) -> None:
    assert reuse_within(header) == seconds
