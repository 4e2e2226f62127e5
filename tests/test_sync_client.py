"""The sync client: a plain script, many threads, inside a running loop (asyncio and trio),
closing, and the errors for use after close or from its own loop thread."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator

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
from hookapi._sync import _Forks
from hookapi.emulator import Emulator, Hook
from hookapi.testing import assert_posted, serve_in_thread


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


def _in_a_child(work: Callable[[], object]) -> tuple[int, str]:
    """Fork; run ``work`` in the child; return its exit status and what it reported.

    The child reports through a pipe and leaves with ``os._exit`` (never through pytest). A
    child still running after 60 s (one that hangs) is killed, and reports so.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child's coverage is not collected)
        os.close(read_end)
        try:
            report = repr(work())
            code = 0
        except BaseException as exc:
            report, code = f"{type(exc).__name__}: {exc}", 1
        os.write(write_end, report.encode())
        os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + 60
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            return -1, "the child hung"
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    return os.waitstatus_to_exitcode(ended[1]), report


@pytest.mark.socket
def test_a_client_made_before_a_fork_posts_from_the_child() -> None:
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    with serve_in_thread(emulator) as server:
        client = HookClient.from_url(hook.url_for(server.url))
        client.post_message("from the parent")  # leaves a keep-alive connection in the pool

        def child() -> tuple[int, int]:
            result = client.post_message("from the child", deadline=20)
            threads = _loop_threads()
            client.close()
            return result.attempts, threads

        assert _in_a_child(child) == (0, "(1, 1)")  # one attempt; its own new loop thread
        client.post_message("the parent again")  # the parent's client is untouched
        client.close()
    assert_posted(emulator, hook, ["from the parent", "from the child", "the parent again"])


@pytest.mark.socket
def test_closing_in_a_fork_child_returns_at_once_and_starts_nothing() -> None:
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    with serve_in_thread(emulator) as server:
        client = HookClient.from_url(hook.url_for(server.url))
        client.post_message("from the parent")

        def child() -> tuple[bool, int, str]:
            client.close()
            try:
                client.post_message("late")
            except ClientClosedError as exc:
                return client.is_closed, _loop_threads(), type(exc).__name__
            return client.is_closed, _loop_threads(), "posted"

        assert _in_a_child(child) == (0, "(True, 0, 'ClientClosedError')")
        client.close()
    assert_posted(emulator, hook, ["from the parent"])


def _stop(thread: threading.Thread) -> None:
    thread.join(20)
    assert not thread.is_alive()


@pytest.mark.socket
def test_an_unclosed_client_warns_and_stops_its_thread_and_sockets_when_collected() -> None:
    emulator = Emulator(per_hour=100, per_day=1000)
    hook = emulator.create_hook("Ops")
    with serve_in_thread(emulator) as server:
        url = hook.url_for(server.url)
        fds = len(os.listdir("/proc/self/fd"))
        before = _loop_threads()
        threads = []
        for i in range(5):
            client = HookClient.from_url(url)
            client.post_message(f"message {i}")
            threads += [t for t in threading.enumerate() if t.name == "hookapi-sync-client"]
            with pytest.warns(ResourceWarning, match=r"unclosed <HookClient base_url="):
                del client  # no cycle holds it: finalised here, as gc.collect() would
        for thread in threads:
            _stop(thread)
        assert _loop_threads() == before
        # Every connection closed (the server, in this process too, closes its end on seeing it).
        _wait_until(lambda: len(os.listdir("/proc/self/fd")) == fds, "the sockets to close")
    assert_posted(emulator, hook, [f"message {i}" for i in range(5)])


def test_a_closed_client_is_collected_without_a_warning(emulator: Emulator, hook: Hook) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        client = HookClient.from_url(hook.url, transport=emulator.transport())
        client.close()
        del client
        gc.collect()


def test_a_client_collected_on_its_own_loop_thread_stops_without_waiting_for_itself(
    emulator: Emulator, hook: Hook
) -> None:
    # The collector can run a finaliser on any thread, the loop's own included.
    client = HookClient.from_url(hook.url, transport=emulator.transport())
    loop_thread = next(t for t in threading.enumerate() if t.name == "hookapi-sync-client")
    finalizer = client._finalizer
    with pytest.warns(ResourceWarning, match="unclosed"):
        client._loop.portal.start_task_soon(_finalize_here, finalizer).result(20)
    _stop(loop_thread)


async def _finalize_here(finalizer: Callable[[], object]) -> None:
    finalizer()


def test_after_a_fork_a_client_starts_anew_and_leaves_the_old_thread_alone(
    emulator: Emulator, hook: Hook
) -> None:
    # What os.fork() runs in the child, run here: the real fork tests above cannot be measured
    # in the child, and this shows the same steps in this process.
    before = _loop_threads()
    client = HookClient.from_url(hook.url, transport=emulator.transport())
    client.post_message("before")
    _Forks.forked()
    try:
        client.post_message("after")
        assert _loop_threads() == before + 2  # the new thread; the old one is not touched
    finally:
        client.close()
        for _, old_loop in _Forks.left_behind:
            old_loop.stop()  # it runs here, in the same process: stop it for the next tests
        _Forks.left_behind.clear()
    assert _loop_threads() == before
    assert_posted(emulator, hook, ["before", "after"])
