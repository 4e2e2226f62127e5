"""hookapi.testing: the pytest plugin's fixtures, the helpers, and the virtual-time loop."""

from __future__ import annotations

import asyncio
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import hookapi.testing
from hookapi import AsyncHookClient, RateLimitError, RetryPolicy
from hookapi.emulator import Emulator, Hook, LoopClock
from hookapi.testing import VirtualTimeEventLoop, assert_posted, make_client, scripted_faults


def test_the_plugin_is_loaded_with_its_marker(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("hookapi.testing.fixtures")
    markers = pytestconfig.getini("markers")
    assert any(str(line).startswith("hook_emulator(**options)") for line in markers)


def test_configuring_the_plugin_twice_registers_the_fixtures_once(
    pytestconfig: pytest.Config,
) -> None:
    hookapi.testing.pytest_configure(pytestconfig)
    names = [name for name, _ in pytestconfig.pluginmanager.list_name_plugin()]
    assert names.count("hookapi.testing.fixtures") == 1


def test_the_fixtures_fit_together(
    hook_emulator: Emulator, hook: Hook, hook_client: AsyncHookClient
) -> None:
    assert hook_emulator.hooks() == [hook]
    assert (hook_emulator.per_hour, hook_emulator.window) == (1000, "fixed")
    assert hook.desktop == "General"
    assert hook_client.hook_id == hook.id
    assert hook_client.url == f"http://emulator.localhost/{hook.id}/***/message"
    assert hook_client.retry_policy.max_delay == 0.1


@pytest.mark.hook_emulator(per_hour=2, window="sliding")
def test_the_marker_configures_the_emulator(hook_emulator: Emulator) -> None:
    assert (hook_emulator.per_hour, hook_emulator.window) == (2, "sliding")


@pytest.mark.anyio
@pytest.mark.hook_emulator(per_hour=2)
async def test_the_client_fixture_throttles_in_virtual_time(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook
) -> None:
    await hook_client.post_message("a")
    await hook_client.post_message("b")
    # The default deadline (60 s) cannot cover the wait for the next hour: refused at once.
    with pytest.raises(RateLimitError) as caught:
        await hook_client.post_message("c")
    assert caught.value.local
    await hook_client.post_message("c", deadline=7200)
    assert anyio.current_time() >= 3600  # it waited for the next hour
    assert_posted(hook_emulator, hook, ["a", "b", "c"])
    assert 429 not in hook_emulator.status_counts


@pytest.mark.anyio
@pytest.mark.hook_emulator(clock=LoopClock(start=datetime(2026, 1, 1, 10, 59, 30, tzinfo=UTC)))
async def test_the_marker_pins_the_emulators_clock(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook
) -> None:
    await hook_client.post_message("a")
    await anyio.sleep(45)
    await hook_client.post_message("b")
    first, second = hook_emulator.messages(hook)
    assert first.received_at == datetime(2026, 1, 1, 10, 59, 30, tzinfo=UTC)
    assert second.received_at == datetime(2026, 1, 1, 11, 0, 15, tzinfo=UTC)
    assert second.received_monotonic - first.received_monotonic == 45
    assert hook_emulator.quota(hook).used_hour == 1  # 11:00 started a new hour


@pytest.mark.anyio
async def test_scripted_faults_strike_and_are_all_used(
    hook_client: AsyncHookClient, hook_emulator: Emulator, hook: Hook
) -> None:
    with scripted_faults(hook_emulator, 503, 500, retry_after=0.5) as faults:
        result = await hook_client.post_message("Deployed")
    assert result.attempts == 3
    assert [fault.kind for fault in faults] == [503, 500]
    assert all(fault.retry_after == 0.5 for fault in faults)
    assert_posted(hook_emulator, hook, ["Deployed"])


def test_scripted_faults_report_the_unused_ones() -> None:
    emulator = Emulator()
    hook = emulator.create_hook()
    other = emulator.create_hook()
    emulator.fail_next(503)  # someone else's: not reported
    unused = r"^2 of 2 scripted faults never struck: \[500, 'drop'\]\.$"
    with (
        pytest.raises(AssertionError, match=unused),
        scripted_faults(emulator, 500, "drop", hook=hook),
    ):
        pass
    # The block's own error wins over the report.
    with (
        pytest.raises(ValueError, match="raised inside"),
        scripted_faults(emulator, 500, hook=other),
    ):
        raise ValueError("raised inside")


def test_assert_posted_passes_on_a_match() -> None:
    emulator = Emulator()
    hook = emulator.create_hook()
    assert_posted(emulator, hook, [])
    assert_posted(emulator, hook.id, [], ordered=False)


async def post_texts(emulator: Emulator, hook: Hook, texts: list[str]) -> None:
    async with make_client(emulator, hook) as client:
        for text in texts:
            await client.post_message(text)


@pytest.mark.anyio
async def test_assert_posted_says_how_the_order_differs() -> None:
    emulator = Emulator()
    hook = emulator.create_hook("Ops")
    await post_texts(emulator, hook, ["a", "c", "b"])
    assert_posted(emulator, hook, ["b", "a", "c"], ordered=False)
    with pytest.raises(AssertionError) as caught:
        assert_posted(emulator, hook, ["a", "b", "c"])
    assert str(caught.value) == (
        f"Hook {hook.id} on Desktop 'Ops' got the 3 expected messages, in another order.\n"
        "  expected: ['a', 'b', 'c']\n"
        "  posted:   ['a', 'c', 'b']\n"
        "  first difference at #1: expected 'b', posted 'c'"
    )
    with pytest.raises(AssertionError, match="got 3 messages, expected 4") as caught:
        assert_posted(emulator, hook, ["a", "c", "b", "d"])
    assert "#3: expected 'd', posted nothing" in str(caught.value)
    with pytest.raises(AssertionError, match="#2: expected nothing, posted 'b'"):
        assert_posted(emulator, hook, ["a", "c"])


@pytest.mark.anyio
async def test_assert_posted_unordered_lists_missing_and_extra() -> None:
    emulator = Emulator()
    hook = emulator.create_hook()
    await post_texts(emulator, hook, ["a", "b", "b"])
    with pytest.raises(AssertionError) as caught:
        assert_posted(emulator, hook.id, ["b", "c", "a"], ordered=False)
    message = str(caught.value)
    assert "got 3 messages, as many as expected, but not the expected ones." in message
    assert message.endswith("  missing: ['c']\n  extra:   ['b']")


@pytest.mark.anyio
async def test_assert_posted_shortens_long_lists() -> None:
    emulator = Emulator()
    hook = emulator.create_hook()
    await post_texts(emulator, hook, [str(n) for n in range(25)])
    with pytest.raises(AssertionError, match=r"'19'\] \.\.\. and 5 more"):
        assert_posted(emulator, hook, [])


def test_make_client_options_and_errors() -> None:
    emulator = Emulator()
    hook = emulator.create_hook()
    client = make_client(emulator, hook.id, timeout=3.0, retry=RetryPolicy.disabled())
    assert client.retry_policy.max_attempts == 1
    with pytest.raises(KeyError, match="no hook with id 'nope'"):
        make_client(emulator, "nope")


def test_assert_posted_refuses_an_unknown_hook() -> None:
    with pytest.raises(KeyError):
        assert_posted(Emulator(), "nope", [])


def run_python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_importing_the_kit_does_not_import_pytest() -> None:
    code = "import hookapi.testing, sys; assert 'pytest' not in sys.modules, 'pytest imported'"
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr


def test_the_documented_example_test_module_passes(tmp_path: Path) -> None:
    doc = hookapi.testing.__doc__ or ""
    example = textwrap.dedent(doc.split("A complete test module::\n", 1)[1].split('"""')[0])
    (tmp_path / "test_example.py").write_text(example)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_misuse.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.hook_emulator(5)\n"
        "def test_positional(hook_emulator):\n"
        "    pass\n"
    )
    result = run_python(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        "-rE",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert "4 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "keyword arguments only" in result.stdout


def test_the_virtual_time_loop_jumps_over_sleeps_and_still_does_io() -> None:
    woken = threading.Event()

    async def main() -> tuple[float, float]:
        await anyio.sleep(7200)
        after_sleep = anyio.current_time()
        # No timer is pending while the thread runs: the loop must wait for real I/O.
        await anyio.to_thread.run_sync(woken.wait, 5)
        return after_sleep, anyio.current_time()

    threading.Timer(0.05, woken.set).start()
    after_sleep, at_end = anyio.run(main, backend_options={"loop_factory": VirtualTimeEventLoop})
    assert after_sleep == 7200.0
    assert at_end == 7200.0
    loop = VirtualTimeEventLoop()
    left, right = socket.socketpair()
    try:
        loop.advance(5)
        assert loop.time() == 5.0
        # The selector passes registrations through to a real one.
        selector = loop._selector  # type: ignore[attr-defined]
        selector.register(left, selectors.EVENT_READ)
        selector.modify(left, selectors.EVENT_READ | selectors.EVENT_WRITE, "data")
        assert selector.get_key(left).data == "data"
        selector.unregister(left)
    finally:
        left.close()
        right.close()
        loop.close()


def test_the_virtual_clock_stands_still_while_the_loop_waits_for_a_thread() -> None:
    # A name lookup (getaddrinfo) runs in the loop's executor. Were the clock to jump to the
    # next timer while it ran, a connect timeout would fire that real time never reached.
    released = threading.Event()

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.sleep, 300)  # a timer the clock could jump to
            threading.Timer(0.05, released.set).start()
            await loop.run_in_executor(None, released.wait, 5)
            during = anyio.current_time()
            in_threads = loop.in_threads
            tasks.cancel_scope.cancel()
        return during, in_threads

    during, in_threads = anyio.run(main, backend_options={"loop_factory": VirtualTimeEventLoop})
    assert during < 300
    assert in_threads == 0


def test_the_executor_shuts_down_without_the_clock_running_out() -> None:
    # asyncio.run waits up to 300 s of the loop's clock for the executor's threads (3.12+),
    # then warns; with warnings as errors, that warning would fail this test.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sum, [1, 2])
        await anyio.sleep(3600)

    anyio.run(main, backend_options={"loop_factory": VirtualTimeEventLoop})
