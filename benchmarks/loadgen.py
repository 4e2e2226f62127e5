"""One measurement in a fresh interpreter: one client posts N messages at a given concurrency.

Run by ``run.py`` once per client, concurrency and repeat, so that no client inherits another's
imports, garbage or warmed caches. Prints one JSON object: wall seconds, process CPU seconds.

    python benchmarks/loadgen.py --client hookapi --url http://127.0.0.1:PORT --posts 3000 \
        --in-flight 32
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

HOOK_ID = "35d7bef2-3d7e-11ec-bfa2-42010a200115"
SECRET = "aa84c7c4e1422ba3e0d6ea719c876be30808b4917e498149674f9f2b3bdb08c7"
MESSAGE = "Deploy finished: build 1234 is live"
MAX_CONNECTIONS = 32

#: A coroutine function that posts one message; built once per run by a client factory.
Post = Callable[[], Awaitable[object]]
Factory = Callable[[AsyncExitStack, str], Awaitable[Post]]


def hook_url(server: str) -> str:
    """The full message URL of the benchmark hook on ``server`` (``http://host:port``)."""
    return f"{server}/hooks/{HOOK_ID}/{SECRET}/message"


def _check(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"The server answered {status}; the benchmark expects 200.")


def aiohttp_transport() -> Any:
    """The inner transport hookapi would use with an aiohttp speed extra."""
    import httpx  # noqa: PLC0415
    from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415

    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=None)
    return AiohttpTransport(limits=limits)


async def _hookapi(stack: AsyncExitStack, server: str, transport: Any = None) -> Post:
    import hookapi  # noqa: PLC0415

    client = hookapi.AsyncHookClient(
        hook_id=HOOK_ID,
        secret=SECRET,
        base_url=f"{server}/hooks",
        transport=transport,
        max_connections=MAX_CONNECTIONS,
    )
    await stack.enter_async_context(client)
    if transport is not None:
        stack.push_async_callback(transport.aclose)

    async def post() -> object:
        return await client.post_message(MESSAGE)

    return post


async def hookapi_default(stack: AsyncExitStack, server: str) -> Post:
    """``hookapi.AsyncHookClient`` on its default transport (its own ``ConnectionPool``)."""
    return await _hookapi(stack, server)


async def hookapi_aiohttp(stack: AsyncExitStack, server: str) -> Post:
    """``hookapi.AsyncHookClient`` on ``httpx-aiohttp``'s ``AiohttpTransport``."""
    return await _hookapi(stack, server, aiohttp_transport())


async def hookapi_fast(stack: AsyncExitStack, server: str) -> Post:
    """``hookapi.AsyncHookClient`` on the transport named by ``HOOKAPI_BENCH_TRANSPORT``.

    The variable holds ``module:callable`` (a callable returning an inner transport), so that
    a prototype transport can be measured without changing this file.
    """
    import importlib  # noqa: PLC0415
    import os  # noqa: PLC0415

    spec = os.environ.get("HOOKAPI_BENCH_TRANSPORT", "")
    module, _, name = spec.partition(":")
    if not module or not name:
        raise RuntimeError("Set HOOKAPI_BENCH_TRANSPORT=module:callable for hookapi-fast.")
    factory = getattr(importlib.import_module(module), name)
    return await _hookapi(stack, server, factory())


async def _bare(stack: AsyncExitStack, server: str, transport: Any) -> Post:
    import httpx  # noqa: PLC0415

    stack.push_async_callback(transport.aclose)
    request = httpx.Request(
        "POST",
        hook_url(server),
        headers={"Content-Type": "application/json", "Accept": "*/*", "User-Agent": "bench"},
        content=json.dumps({"message": MESSAGE}, separators=(",", ":")).encode(),
        extensions={"timeout": {"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}},
    )
    send = transport.handle_async_request

    async def post() -> object:
        response = await send(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        _check(response.status_code)
        return response

    return post


async def transport_pool(stack: AsyncExitStack, server: str) -> Post:
    """The bare ``ConnectionPool`` hookapi builds by default, pre-built request."""
    from hookapi._http import ConnectionPool  # noqa: PLC0415

    return await _bare(stack, server, ConnectionPool(max_connections=MAX_CONNECTIONS))


async def transport_httpcore(stack: AsyncExitStack, server: str) -> Post:
    """The bare ``httpx.AsyncHTTPTransport`` (httpcore's pool), pre-built request."""
    import httpx  # noqa: PLC0415

    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
    )
    return await _bare(stack, server, httpx.AsyncHTTPTransport(limits=limits))


async def transport_aiohttp(stack: AsyncExitStack, server: str) -> Post:
    """The bare ``httpx-aiohttp`` transport, pre-built request."""
    return await _bare(stack, server, aiohttp_transport())


async def transport_fast(stack: AsyncExitStack, server: str) -> Post:
    """The bare transport named by ``HOOKAPI_BENCH_TRANSPORT``, pre-built request."""
    import importlib  # noqa: PLC0415
    import os  # noqa: PLC0415

    module, _, name = os.environ.get("HOOKAPI_BENCH_TRANSPORT", "").partition(":")
    if not module or not name:
        raise RuntimeError("Set HOOKAPI_BENCH_TRANSPORT=module:callable for transport-fast.")
    return await _bare(stack, server, getattr(importlib.import_module(module), name)())


async def httpx_client(stack: AsyncExitStack, server: str) -> Post:
    """A hand-rolled ``httpx.AsyncClient`` with its defaults, as users write it."""
    import httpx  # noqa: PLC0415

    client = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
    url = hook_url(server)

    async def post() -> object:
        response = await client.post(url, json={"message": MESSAGE})
        _check(response.status_code)
        return response

    return post


async def httpx_aiohttp_client(stack: AsyncExitStack, server: str) -> Post:
    """``httpx.AsyncClient`` on ``httpx-aiohttp``'s transport (its own defaults)."""
    import httpx  # noqa: PLC0415
    from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415

    client = await stack.enter_async_context(
        httpx.AsyncClient(transport=AiohttpTransport(), timeout=10.0)
    )
    url = hook_url(server)

    async def post() -> object:
        response = await client.post(url, json={"message": MESSAGE})
        _check(response.status_code)
        return response

    return post


async def slack_sdk_client(stack: AsyncExitStack, server: str) -> Post:
    """``slack_sdk``'s ``AsyncWebhookClient`` with one shared aiohttp session."""
    import aiohttp  # noqa: PLC0415
    from slack_sdk.webhook.async_client import AsyncWebhookClient  # noqa: PLC0415

    session = await stack.enter_async_context(aiohttp.ClientSession())
    client = AsyncWebhookClient(hook_url(server), timeout=10, session=session)

    async def post() -> object:
        response = await client.send(text=MESSAGE)
        _check(response.status_code)
        return response

    return post


async def discord_webhook_client(stack: AsyncExitStack, server: str) -> Post:
    """``discord-webhook``'s ``AsyncDiscordWebhook``, one per message as its docs show.

    Its ``execute`` parses the answer as JSON, so it posts to a path where the server answers
    ``{}`` (two bytes, like ``ok``) with the same headers.
    """
    from discord_webhook import AsyncDiscordWebhook  # noqa: PLC0415

    url = f"{server}/api/webhooks/{HOOK_ID}/{SECRET}"

    async def post() -> object:
        response = await AsyncDiscordWebhook(url=url, content=MESSAGE, timeout=10).execute()
        _check(response.status_code)
        return response

    return post


async def pyreqwest_client(stack: AsyncExitStack, server: str) -> Post:
    """``pyreqwest`` (reqwest, in Rust, on its own runtime): one client, the body read whole."""
    from datetime import timedelta  # noqa: PLC0415

    from pyreqwest.client import ClientBuilder  # noqa: PLC0415

    builder = ClientBuilder().max_connections(MAX_CONNECTIONS).timeout(timedelta(seconds=10))
    client = await stack.enter_async_context(builder.build())
    url = hook_url(server)

    async def post() -> object:
        response = await client.post(url).body_json({"message": MESSAGE}).build().send()
        _check(response.status)
        return response

    return post


class _FloorConnection(asyncio.Protocol):
    """The floor's connection: pre-built request bytes out, llhttp (httptools) parses back."""

    def __init__(self) -> None:
        import httptools  # noqa: PLC0415

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed"))


async def floor_client(stack: AsyncExitStack, server: str) -> Post:
    """The floor: a minimal asyncio Protocol client, pre-built bytes, httptools, no guarantees.

    Up to 32 keep-alive connections, idle ones on a stack, more posts wait in a FIFO; no
    timeouts, quota, retries or error mapping. What any asyncio client in Python must pay.
    """
    host, _, port = server.removeprefix("http://").partition(":")
    body = json.dumps({"message": MESSAGE}, separators=(",", ":")).encode()
    path = hook_url(server).removeprefix(server)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    idle: list[_FloorConnection] = []
    waiters: collections.deque[asyncio.Future[_FloorConnection]] = collections.deque()
    opened: list[_FloorConnection] = []

    def close_all() -> None:
        for connection in opened:
            if connection.transport is not None:
                connection.transport.close()

    stack.callback(close_all)

    async def post() -> object:
        if idle:
            connection = idle.pop()
        elif len(opened) < MAX_CONNECTIONS:
            connection = _FloorConnection()
            opened.append(connection)
            await loop.create_connection(lambda: connection, host, int(port))
        else:
            waiter: asyncio.Future[_FloorConnection] = loop.create_future()
            waiters.append(waiter)
            connection = await waiter
        done = connection.done = loop.create_future()
        connection.transport.write(request)  # type: ignore[union-attr]
        await done
        status = connection.parser.get_status_code()
        if waiters:
            waiters.popleft().set_result(connection)
        else:
            idle.append(connection)
        _check(status)
        return status

    return post


async def aiohttp_client(stack: AsyncExitStack, server: str) -> Post:
    """Raw ``aiohttp.ClientSession.post`` with one session, reading the body."""
    import aiohttp  # noqa: PLC0415

    session = await stack.enter_async_context(
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0))
    )
    url = hook_url(server)

    async def post() -> object:
        async with session.post(url, json={"message": MESSAGE}) as response:
            await response.read()
            _check(response.status)
            return response

    return post


CLIENTS: dict[str, Factory] = {
    "hookapi": hookapi_default,
    "hookapi-aiohttp": hookapi_aiohttp,
    "hookapi-fast": hookapi_fast,
    "transport-pool": transport_pool,
    "transport-httpcore": transport_httpcore,
    "transport-aiohttp": transport_aiohttp,
    "transport-fast": transport_fast,
    "httpx": httpx_client,
    "httpx-aiohttp": httpx_aiohttp_client,
    "slack_sdk": slack_sdk_client,
    "discord-webhook": discord_webhook_client,
    "aiohttp": aiohttp_client,
    "floor": floor_client,
    "pyreqwest": pyreqwest_client,
}


#: Clients measured on trio (through anyio) rather than asyncio.
TRIO_CLIENTS: dict[str, Factory] = {"hookapi-trio": hookapi_default}


async def drive(post: Post, posts: int, in_flight: int) -> None:
    """Post ``posts`` messages from ``in_flight`` tasks that each take the next one."""
    left = posts

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await post()

    async with asyncio.TaskGroup() as group:
        for _ in range(min(in_flight, posts)):
            group.create_task(worker())


async def drive_tasks(post: Post, posts: int, in_flight: int) -> None:
    """Post ``posts`` messages, a task each, ``in_flight`` at a time: how applications call it.

    Each task that ends starts the next one from its done-callback, so the driver itself
    costs one task creation per message and nothing else.
    """
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    left = posts
    running = 0
    errors: list[BaseException] = []

    def start() -> None:
        nonlocal left, running
        left -= 1
        running += 1
        loop.create_task(post()).add_done_callback(ended)  # type: ignore[arg-type]

    def ended(task: asyncio.Task[object]) -> None:
        nonlocal running
        running -= 1
        if not task.cancelled() and task.exception() is not None:
            errors.append(task.exception())  # type: ignore[arg-type]
        if left > 0 and not errors:
            start()
        elif running == 0 and not finished.done():
            finished.set_result(None)

    for _ in range(min(in_flight, posts)):
        start()
    await finished
    if errors:
        raise errors[0]


async def drive_trio(post: Post, posts: int, in_flight: int) -> None:
    """:func:`drive` for trio."""
    import trio  # noqa: PLC0415

    left = posts

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await post()

    async with trio.open_nursery() as nursery:
        for _ in range(min(in_flight, posts)):
            nursery.start_soon(worker)


async def measure(
    client: str,
    server: str,
    posts: int,
    in_flight: int,
    shape: str = "worker",
    profile: bool = False,
) -> dict[str, float]:
    """Warm the client up (connections open), then time ``posts`` messages."""
    on_trio = client in TRIO_CLIENTS
    factory = TRIO_CLIENTS[client] if on_trio else CLIENTS[client]
    run = drive_trio if on_trio else drive_tasks if shape == "task" else drive
    async with AsyncExitStack() as stack:
        post = await factory(stack, server)
        await run(post, max(2 * in_flight, 50), in_flight)
        gc.collect()
        profiler = None
        if profile:
            import cProfile  # noqa: PLC0415

            profiler = cProfile.Profile()
            profiler.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        await run(post, posts, in_flight)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
            _print_profile(profiler, posts)
    return {"wall": wall, "cpu": cpu}


def _print_profile(profiler: Any, posts: int) -> None:
    """Each layer's share of the CPU, to stderr: the functions that cost most, per message.

    Profiled runs are slower (cProfile's own cost), so the shares count, not the totals.
    """
    import pstats  # noqa: PLC0415

    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"{'share':>6} {'us/msg':>8}  function (own time, profiled)", file=sys.stderr)
    for (path, line, name), entry in rows[:25]:
        where = f"{path.rsplit('site-packages/', 1)[-1].rsplit('/work/', 1)[-1]}:{line}({name})"
        print(f"{entry[2] / total:>6.1%} {entry[2] / posts * 1e6:>8.2f}  {where}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", choices=sorted({*CLIENTS, *TRIO_CLIENTS}), required=True)
    parser.add_argument("--url", required=True, help="the server, as http://127.0.0.1:PORT")
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument(
        "--shape",
        choices=("worker", "task"),
        default="worker",
        help="worker: a task per slot takes message after message; task: a task per message",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print each function's share of CPU to stderr"
    )
    args = parser.parse_args(argv)
    params = (
        args.client,
        args.url.rstrip("/"),
        args.posts,
        args.in_flight,
        args.shape,
        args.profile,
    )
    if args.client in TRIO_CLIENTS:
        import trio  # noqa: PLC0415

        result = trio.run(measure, *params)
    else:
        result = asyncio.run(measure(*params))
    json.dump(result, sys.stdout)
    print()
    sys.stdout.flush()
    # Measured and printed: skip the interpreter's finalisation, where pyreqwest's runtime
    # threads can crash it (a fatal PyGILState_Release) after the work is done.
    os._exit(0)


if __name__ == "__main__":
    main()
