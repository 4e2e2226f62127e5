"""The sync client: a plain script, many threads, inside a running loop (asyncio and trio),
closing, and the errors for use after close or from its own loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import httpx
import pytest

from hookapi import (
    ClientClosedError,
    Delivery,
    HookClient,
    NotFoundError,
    PostResult,
    RetryPolicy,
)
from hookapi.emulator import Emulator, Hook
from hookapi.testing import assert_posted


def _loop_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "hookapi-sync-client")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(per_hour=100, per_day=1000)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Ops")


@pytest.fixture
def client(emulator: Emulator, hook: Hook) -> Iterator[HookClient]:
    before = _loop_threads()
    with HookClient.from_url(hook.url, transport=emulator.transport()) as client:
        assert _loop_threads() == before + 1
        yield client
    assert _loop_threads() == before  # closing stopped its thread


def test_a_plain_script_posts_and_learns_the_quota(
    client: HookClient, emulator: Emulator, hook: Hook
) -> None:
    result = client.post_message("Deploy finished", deadline=10)
    assert isinstance(result, PostResult)
    assert result.attempts == 1
    assert client.rate_limit is not None
    assert client.rate_limit.remaining == 99
    assert_posted(emulator, hook, ["Deploy finished"])


def test_the_constructor_and_from_env_take_the_same_options(
    emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01)
    with HookClient(
        hook_id=hook.id,
        secret=hook.secret,
        base_url=hook.base_url,
        transport=emulator.transport(),
        retry=retry,
        timeout=3.0,
    ) as built:
        assert built.retry_policy is retry
        assert built.hook_id == hook.id
        built.post_message("one")
    monkeypatch.setenv("HOOKAPI_URL", hook.url)
    with HookClient.from_env(transport=emulator.transport(), retry=retry) as from_env:
        assert from_env.url == f"{hook.base_url}/{hook.id}/***/message"
        from_env.post_message("two")
    assert_posted(emulator, hook, ["one", "two"])


def test_errors_are_the_async_clients(client: HookClient, emulator: Emulator) -> None:
    emulator.fail_next(404)
    with pytest.raises(NotFoundError, match="answered 404") as caught:
        client.post_message("lost")
    assert caught.value.delivery is Delivery.REJECTED


def test_many_threads_share_one_client_and_one_quota(
    client: HookClient, emulator: Emulator, hook: Hook
) -> None:
    texts = [f"thread {t} message {m}" for t in range(8) for m in range(5)]
    failures: list[BaseException] = []

    def post(mine: list[str]) -> None:
        try:
            for text in mine:
                client.post_message(text)
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=post, args=(texts[t * 5 : t * 5 + 5],)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert_posted(emulator, hook, texts, ordered=False)
    assert client.rate_limit is not None
    assert client.rate_limit.remaining == 100 - 40


def test_it_works_inside_a_running_asyncio_loop(
    client: HookClient, emulator: Emulator, hook: Hook
) -> None:
    async def notebook_cell() -> PostResult:
        asyncio.get_running_loop()  # a loop is running in this thread
        return client.post_message("from a notebook")

    assert asyncio.run(notebook_cell()).status_code == 200
    assert_posted(emulator, hook, ["from a notebook"])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_it_works_inside_anyio_run(
    backend: str, client: HookClient, emulator: Emulator, hook: Hook
) -> None:
    async def main() -> int:
        await anyio.lowlevel.checkpoint()
        return client.post_message(f"from {backend}").attempts

    assert anyio.run(main, backend=backend) == 1
    assert_posted(emulator, hook, [f"from {backend}"])


def test_use_after_close_is_a_clear_error(emulator: Emulator, hook: Hook) -> None:
    client = HookClient.from_url(hook.url, transport=emulator.transport())
    client.close()
    client.close()  # again: nothing happens
    assert client.is_closed
    with pytest.raises(ClientClosedError) as caught:
        client.post_message("late")
    assert str(caught.value) == (
        "This HookClient is closed; create a new one. The message was not sent."
    )
    with pytest.raises(ClientClosedError, match="cannot be reopened"), client:
        pass
    assert emulator.messages(hook) == []


class _CallsBack(httpx.AsyncBaseTransport):
    """A transport that, on the client's own loop thread, calls the sync client back."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.client: HookClient | None = None
        self.errors: list[RuntimeError] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.client is not None
        for call in (lambda c: c.post_message("again"), HookClient.close):
            try:
                call(self.client)
            except RuntimeError as exc:
                self.errors.append(exc)
        return await self.inner.handle_async_request(request)


def test_a_call_from_its_own_loop_thread_is_refused(emulator: Emulator, hook: Hook) -> None:
    transport = _CallsBack(emulator.transport())
    with HookClient.from_url(hook.url, transport=transport) as client:
        transport.client = client
        client.post_message("first")
    assert [str(e) for e in transport.errors] == [
        f"HookClient.{name} was called from the client's own event loop thread (from a "
        "transport or a callback running there), where it would wait for itself forever; "
        "use an AsyncHookClient there instead."
        for name in ("post_message", "close")
    ]
    assert_posted(emulator, hook, ["first"])


class _Gate(httpx.AsyncBaseTransport):
    """Holds each request until the test opens the gate."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.gate = threading.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        await anyio.to_thread.run_sync(self.gate.wait)
        return await self.inner.handle_async_request(request)


def _wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_close_lets_calls_in_progress_finish(emulator: Emulator, hook: Hook) -> None:
    gate = _Gate(emulator.transport())
    client = HookClient.from_url(hook.url, transport=gate)
    results: list[PostResult] = []
    poster = threading.Thread(target=lambda: results.append(client.post_message("in flight")))
    poster.start()
    assert gate.entered.wait(20)
    closer = threading.Thread(target=client.close)
    closer.start()
    _wait_until(lambda: client.is_closed, "close() to begin")
    with pytest.raises(ClientClosedError):
        client.post_message("too late")
    assert closer.is_alive()  # waiting for the call in flight
    gate.gate.set()
    poster.join(20)
    closer.join(20)
    assert not closer.is_alive()
    assert [r.status_code for r in results] == [200]
    assert_posted(emulator, hook, ["in flight"])


def test_a_bad_option_starts_no_thread() -> None:
    before = _loop_threads()
    with pytest.raises(ValueError, match="timeout must be more than 0 seconds"):
        HookClient.from_url("https://hooks.example.test/a/b", timeout=0)
    assert _loop_threads() == before


def test_the_repr_shows_no_secret(client: HookClient, hook: Hook) -> None:
    assert repr(client) == f"<HookClient base_url='{hook.base_url}' hook_id='{hook.id}'>"
    assert hook.secret not in repr(client)
