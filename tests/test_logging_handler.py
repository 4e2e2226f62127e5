"""HookHandler: records reach the hook under its quota, in digests; logging never suffers for it."""

from __future__ import annotations

import gc
import logging
import logging.config
import math
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import traceback
import tracemalloc
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import pytest
from trio.testing import MockClock

from hookapi import AsyncHookClient, InvalidInputError
from hookapi.emulator import Emulator, Hook
from hookapi.logging import HookHandler
from hookapi.testing import VirtualTimeEventLoop, make_client, serve_in_thread

from .conftest import virtual_backend

RECORD = re.compile(r"^payment (\d+) failed", re.MULTILINE)
SUMMARY = re.compile(r"^\.\.\. and (\d+) more ERROR records? ", re.MULTILINE)


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(per_hour=60, per_day=1000)


@pytest.fixture
def hook(emulator: Emulator) -> Hook:
    return emulator.create_hook("Alerts")


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of the application's own, detached from the root and cleaned up after."""
    log = logging.getLogger(f"app.{request.node.name}")
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def posted(emulator: Emulator) -> list[str]:
    return [message.text for message in emulator.messages()]


def held(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename"))


def in_sequence(texts: list[str]) -> int:
    """How many records the messages account for, each exactly once and in order.

    Records are numbered from 0 in the order they were logged; each message must pick up
    where the last one left off: the records it shows whole come next, and its summary counts
    the ones after those.
    """
    expected = 0
    for text in texts:
        for number in RECORD.findall(text):
            assert int(number) == expected, text
            expected += 1
        expected += sum(int(n) for n in SUMMARY.findall(text))
    return expected


def accounted(texts: list[str]) -> tuple[list[int], int]:
    """The record numbers shown whole, in order, and how many records summaries counted."""
    shown = [int(n) for text in texts for n in RECORD.findall(text)]
    counted = sum(int(n) for text in texts for n in SUMMARY.findall(text))
    return shown, counted


@pytest.mark.anyio
async def test_a_flood_of_500_records_against_60_an_hour_arrives_in_a_few_digests(
    emulator: Emulator, hook: Hook, logger: logging.Logger
) -> None:
    handler = HookHandler(make_client(emulator, hook), drain_timeout=math.inf)
    logger.addHandler(handler)
    start = anyio.current_time()
    first: float | None = None
    async with handler.delivering():
        for i in range(500):  # 500 records in 10 s
            logger.error("payment %d failed for order %s", i, f"A{i % 7}")
            await anyio.sleep(0.02)
            if first is None and emulator.messages():
                first = anyio.current_time() - start
    finished = anyio.current_time() - start
    texts = posted(emulator)
    shown, counted = accounted(texts)
    assert shown == sorted(shown)  # in order
    assert len(set(shown)) == len(shown)  # none twice
    assert len(shown) + counted == 500  # every record, in words or in a count
    assert in_sequence(texts) == 500  # ... each exactly once, in the order logged
    assert shown[0] == 0
    assert emulator.status_counts == {200: len(texts)}  # not one refusal
    assert len(texts) <= 10  # a handful, not 500 messages over eight hours
    assert first is not None
    assert first < 1.0
    assert finished <= 600.0
    assert "of them like: payment" in texts[-1]


@pytest.mark.anyio
async def test_records_logged_from_threads_arrive_while_delivering_on_the_loop(
    emulator: Emulator, hook: Hook, logger: logging.Logger
) -> None:
    handler = HookHandler(make_client(emulator, hook), drain_timeout=math.inf)
    logger.addHandler(handler)

    def log_from_a_thread(n: int) -> None:
        for i in range(10):
            logger.error("payment %d failed", n * 10 + i)

    async with handler.delivering(), anyio.create_task_group() as tasks:
        for n in range(5):
            tasks.start_soon(anyio.to_thread.run_sync, log_from_a_thread, n)
    shown, counted = accounted(posted(emulator))
    assert len(shown) + counted == 50
    assert emulator.status_counts == {200: len(posted(emulator))}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_handlers_own_thread_delivers_records_from_many_threads(
    emulator: Emulator, hook: Hook, logger: logging.Logger, backend: str
) -> None:
    options: dict[str, Any] = (
        {"clock": MockClock(autojump_threshold=0)}
        if backend == "trio"
        else {"loop_factory": VirtualTimeEventLoop}
    )
    handler = HookHandler(
        make_client(emulator, hook),
        drain_timeout=math.inf,
        backend=backend,  # type: ignore[arg-type]
        backend_options=options,
    )
    logger.addHandler(handler)

    def log(n: int) -> None:
        for i in range(50):
            logger.error("payment %d failed", n * 50 + i)

    threads = [threading.Thread(target=log, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    assert not any(t.name == "hookapi-log-handler" and t.is_alive() for t in threading.enumerate())
    shown, counted = accounted(posted(emulator))
    assert len(set(shown)) == len(shown)
    assert len(shown) + counted == 200
    assert emulator.status_counts == {200: len(posted(emulator))}


@pytest.mark.anyio
async def test_records_of_hookapi_and_its_http_stack_are_never_sent(
    emulator: Emulator, hook: Hook
) -> None:
    handler = HookHandler(make_client(emulator, hook))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        async with handler.delivering():
            for name in ("hookapi", "hookapi.outbox", "httpx", "httpcore.connection"):
                logging.getLogger(name).error("internal trouble in %s", name)
            logging.getLogger("app").error("the application's error")
    finally:
        root.removeHandler(handler)
    assert posted(emulator) == ["the application's error"]


@pytest.mark.anyio
async def test_a_full_queue_drops_counts_and_says_so_in_the_next_message(
    emulator: Emulator, hook: Hook, logger: logging.Logger
) -> None:
    handler = HookHandler(make_client(emulator, hook), capacity=5, drain_timeout=math.inf)
    logger.addHandler(handler)
    async with handler.delivering():
        for i in range(20):  # no await: the pump cannot run, the queue fills
            logger.error("payment %d failed", i)
        assert handler.dropped == 15
        await anyio.sleep(1)  # the pump takes the five
        logger.error("payment %d failed", 20)
    texts = posted(emulator)
    assert texts[0].startswith("(15 records were dropped: the log handler's queue of 5 was full)")
    shown, counted = accounted(texts)
    assert len(shown) + counted == 6
    assert handler.dropped == 0


class Kept(logging.Handler):
    """The application's other handler (a console, a file): what it was given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.anyio
async def test_the_hook_failing_throughout_leaves_logging_working_and_memory_bounded(
    emulator: Emulator, hook: Hook, logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """503 and 429 for an hour: nothing of hookapi's own trouble is sent, nothing piles up."""
    bodies: list[bytes] = []

    def failing(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(503 if len(bodies) % 2 else 429, text="go away")

    client = make_client(emulator, hook, transport=httpx.MockTransport(failing))
    capacity = 100
    handler = HookHandler(client, capacity=capacity, drain_timeout=5.0)
    kept = Kept()
    logger.addHandler(kept)
    logger.addHandler(handler)
    root = logging.getLogger()
    root.addHandler(handler)  # the root too: hookapi's warnings reach it
    # Only what hookapi's lines allocate counts (pytest keeps every record it captures).
    ours = [tracemalloc.Filter(inclusive=True, filename_pattern="*/hookapi/*")]
    tracemalloc.start()
    try:
        async with handler.delivering():
            for minute in range(60):
                for i in range(100):
                    logger.error("payment %d failed in minute %d", i, minute)
                if minute == 5:
                    gc.collect()
                    early = held(tracemalloc.take_snapshot().filter_traces(ours))
                await anyio.sleep(60)
                # What waits stays within the capacity: the queue, and the outbox behind it.
                feed, pump = handler._feed, handler._pump
                assert feed is not None
                assert pump is not None
                assert pump.outbox is not None
                assert len(feed.entries) <= capacity
                assert len(pump.outbox.pending) <= capacity
                assert pump.held <= capacity
            gc.collect()
            late = held(tracemalloc.take_snapshot().filter_traces(ours))
    finally:
        tracemalloc.stop()
        root.removeHandler(handler)
    assert late - early < 256 * 1024  # 5,400 more records, and no more memory to speak of
    # The application's logging went on: its other handler got every record.
    assert len(kept.records) == 6000
    # It kept trying, as the 429s let it, and every attempt carried only the app's records
    # (or the count of those dropped), never a word of hookapi's, httpx's or httpcore's.
    assert len(bodies) >= 3
    for body in bodies:
        text = body.decode()
        assert "payment" in text or "dropped" in text
        for word in ("hookapi", "httpx", "httpcore", "503", "429", "go away", hook.secret):
            assert word not in text
    ours_logged = [r for r in caplog.records if r.name.startswith("hookapi")]
    assert ours_logged  # its trouble was logged, to the hookapi logger only


def test_emit_never_raises_and_bad_options_are_refused(
    emulator: Emulator, hook: Hook, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = HookHandler(make_client(emulator, hook))
    logger.addHandler(handler)
    bad = {"name": "app", "msg": "%d is not a number", "args": ("x",), "levelname": "ERROR"}
    handler.handle(logging.makeLogRecord(bad))  # the format fails in emit
    assert "Logging error" in capsys.readouterr().err
    with pytest.raises(InvalidInputError):
        HookHandler("not a url")
    with pytest.raises(InvalidInputError, match="capacity"):
        HookHandler(make_client(emulator, hook), capacity=0)
    with pytest.raises(InvalidInputError, match="backend"):
        HookHandler(make_client(emulator, hook), backend="curio")  # type: ignore[arg-type]


def test_an_unclosed_handler_warns_and_its_thread_ends(emulator: Emulator, hook: Hook) -> None:
    options = {"loop_factory": VirtualTimeEventLoop}
    handler = HookHandler(make_client(emulator, hook), backend_options=options)
    handler.emit(logging.makeLogRecord({"name": "app", "msg": "one", "levelname": "ERROR"}))
    thread = next(t for t in threading.enumerate() if t.name == "hookapi-log-handler")
    with pytest.warns(ResourceWarning, match="unclosed <HookHandler ERROR") as warned:
        del handler  # no cycle holds it: finalised here, as gc.collect() would
    assert all(hook.secret not in str(warning.message) for warning in warned)
    thread.join(20)
    assert not thread.is_alive()
    assert posted(emulator) == ["one"]


def test_dict_config_builds_it_from_the_environment(
    emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKAPI_URL", hook.url)
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "chat": {
                    "class": "hookapi.logging.HookHandler",
                    "level": "CRITICAL",
                    "capacity": 50,
                    "burst": 1,
                }
            },
            "loggers": {"app.configured": {"handlers": ["chat"], "propagate": False}},
        }
    )
    log = logging.getLogger("app.configured")
    (handler,) = log.handlers
    try:
        assert isinstance(handler, HookHandler)
        assert handler.level == logging.CRITICAL
        assert repr(handler).startswith("<HookHandler CRITICAL http://emulator.localhost/")
    finally:
        log.removeHandler(handler)
        handler.close()


CHILD = textwrap.dedent(
    """
    import logging, sys
    from hookapi.logging import HookHandler

    logging.basicConfig(level=logging.INFO)
    logging.getLogger().addHandler(HookHandler(sys.argv[1], drain_timeout=float(sys.argv[2])))
    logging.getLogger("job").error("the nightly job failed")
    # no close(): the interpreter's exit must deliver it, or give up in time
    """
)


@pytest.mark.socket
def test_a_process_that_logs_and_exits_without_closing_delivers_and_ends() -> None:
    emulator = Emulator(per_hour=60, per_day=1000)
    hook = emulator.create_hook("Jobs")
    with serve_in_thread(emulator) as server:
        url = hook.url_for(server.url)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, url, "10"], check=False, capture_output=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert [m.text for m in emulator.messages()] == ["the nightly job failed"]


@pytest.mark.socket
def test_a_process_whose_hook_is_unreachable_still_exits() -> None:
    with serve_in_thread(Emulator()) as server:
        url = f"{server.url}/35d7bef2-3d7e-11ec-bfa2-42010a200115/{'ab' * 32}"
    # The server is gone: every attempt is refused, and exit gives up after the drain.
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, "0.2"], check=False, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


class Broken(logging.Formatter):
    """A formatter with a bug: it raises for records that carry ``broken``."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "broken", False):
            raise KeyError("the format's field")
        return super().format(record)


@pytest.mark.anyio
async def test_a_record_that_cannot_be_formatted_is_dropped_counted_and_said(
    emulator: Emulator,
    hook: Hook,
    logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = HookHandler(make_client(emulator, hook), drain_timeout=math.inf)
    handler.setFormatter(Broken())
    logger.addHandler(handler)

    def log(msg: str, *args: object, broken: bool = False) -> None:
        # Straight to the handler: pytest's capture handlers on the logger would raise.
        record = logger.makeRecord(logger.name, logging.ERROR, "app.py", 1, msg, args, None)
        record.broken = broken
        handler.handle(record)

    async with handler.delivering():
        log("%d is not a number", "x")  # the message's own formatting raises
        log("payment 0 failed", broken=True)  # the formatter raises
        assert handler.dropped == 2
        monkeypatch.setattr(logging, "raiseExceptions", False)  # as in production
        log("payment 1 failed", broken=True)
        await anyio.sleep(1)
        log("payment %d failed", 2)
    assert capsys.readouterr().err.count("--- Logging error ---") == 2  # logging's own report
    assert posted(emulator)[0] == "(3 records were dropped: formatting raised TypeError, KeyError)"
    assert posted(emulator)[1:] == ["payment 2 failed"]
    assert handler.dropped == 0


def test_a_handler_used_after_close_drops_records_quietly(
    emulator: Emulator, hook: Hook, logger: logging.Logger
) -> None:
    options = {"loop_factory": VirtualTimeEventLoop}
    handler = HookHandler(make_client(emulator, hook), backend_options=options)
    logger.addHandler(handler)
    logger.error("payment %d failed", 0)
    handler.close()
    threads = threading.active_count()
    logger.error("payment %d failed", 1)  # no error, no new thread, nothing sent
    handler.emit(logging.makeLogRecord({"name": "app", "msg": "direct", "levelname": "ERROR"}))
    assert threading.active_count() == threads
    handler.close()  # again: nothing
    assert posted(emulator) == ["payment 0 failed"]
    assert handler.dropped == 0

    async def deliver() -> None:
        async with handler.delivering():
            pass  # pragma: no cover

    with pytest.raises(RuntimeError, match="closed or already delivering"):
        anyio.run(deliver)


def test_records_logged_on_the_delivery_thread_are_never_sent(
    emulator: Emulator, hook: Hook, logger: logging.Logger
) -> None:
    """A transport (or anything on the handler's thread) that logs cannot feed the handler."""
    inner = emulator.transport()

    class Chatty(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            logger.getChild("transport").error("posting a message from the delivery thread")
            return await inner.handle_async_request(request)

    options = {"loop_factory": VirtualTimeEventLoop}
    handler = HookHandler(
        make_client(emulator, hook, transport=Chatty()),
        drain_timeout=math.inf,
        backend_options=options,
    )
    kept = Kept()
    logger.addHandler(kept)
    logger.addHandler(handler)
    for i in range(3):
        logger.error("payment %d failed", i)
    handler.close()
    assert posted(emulator) == [f"payment {i} failed" for i in range(3)]
    # The application's other handlers still got the thread's records.
    assert [r.getMessage() for r in kept.records].count(
        "posting a message from the delivery thread"
    ) == 3


SECRET = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7"
HOOK_ID = "35d7bef2-3d7e-11ec-bfa2-42010a200115"


@pytest.mark.parametrize(
    "url",
    [
        f"htps://hooks.example.test/v1/{HOOK_ID}/{SECRET}",  # the scheme
        f"https//hooks.example.test/v1/{HOOK_ID}/{SECRET}",  # the colon
        f"https://hooks.example.test/v1/{HOOK_ID}/{SECRET}/mesage",  # the last segment
        f"https://hooks.example.test/v1/{HOOK_ID}//{SECRET}",  # a double slash
        f"https://hooks.example.test/v1/{HOOK_ID}/{SECRET}?x=1",  # a pasted query
        f"https://user@hooks.example.test/v1/{HOOK_ID}/{SECRET}",  # a user name
        f"https://hooks.example.test/v1/{HOOK_ID}/{SECRET[:20]}%20{SECRET[20:]}",  # encoded
        "",
    ],
)
def test_a_hook_url_with_a_typo_is_a_typed_error_that_never_shows_the_secret(url: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        HookHandler(url)
    told = "".join(traceback.format_exception(raised.value))
    assert SECRET[:16] not in told
    assert SECRET[-16:] not in told
    assert not any(t.name == "hookapi-log-handler" for t in threading.enumerate())


@pytest.mark.anyio
async def test_a_wrong_secret_is_reported_to_hookapis_logger_only_and_never_shown(
    emulator: Emulator,
    hook: Hook,
    logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    recwarn: pytest.WarningsRecorder,
) -> None:
    """The service answers 401; the handler says so without the secret, and logging goes on."""
    wrong = hook.secret[:-4] + "0000"
    client = AsyncHookClient.from_url(
        hook.url.replace(hook.secret, wrong), transport=emulator.transport()
    )
    handler = HookHandler(client, capacity=3, drain_timeout=10.0)
    root = logging.getLogger()
    root.addHandler(handler)
    logger.addHandler(handler)
    told: list[str] = [repr(handler)]
    try:
        async with handler.delivering():
            for i in range(10):  # more than the capacity: some dropped, and said
                logger.error("payment %d failed", i)
                await anyio.lowlevel.checkpoint()
            await anyio.sleep(60)
    finally:
        root.removeHandler(handler)
    assert posted(emulator) == []
    assert emulator.status_counts.get(401, 0) >= 1
    told += [caplog.text, *(str(w.message) for w in recwarn)]
    told += [logging.Formatter().format(r) for r in caplog.records]
    hookapi_said = "\n".join(told)
    assert "401" in hookapi_said or "access" in hookapi_said.lower()
    assert wrong not in hookapi_said
    assert wrong[:16] not in hookapi_said


class Silent(httpx.AsyncBaseTransport):
    """A hook that takes every request and never answers."""

    def __init__(self) -> None:
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_gives_up_after_drain_timeout_when_the_hook_never_answers(
    emulator: Emulator, hook: Hook, logger: logging.Logger, backend: str
) -> None:
    _, options = virtual_backend(backend)
    silent = Silent()
    # An hour per attempt: only the drain's timeout can end the wait.
    client = make_client(emulator, hook, transport=silent, timeout=3600.0)
    handler = HookHandler(
        client,
        drain_timeout=30.0,
        backend=backend,  # type: ignore[arg-type]
        backend_options=options,
    )
    logger.addHandler(handler)
    logger.error("payment %d failed", 0)
    thread = next(t for t in threading.enumerate() if t.name == "hookapi-log-handler")
    handler.close()
    assert not thread.is_alive()
    assert silent.requests == 1
    assert posted(emulator) == []


SILENT_CHILD = textwrap.dedent(
    """
    import logging, sys
    from hookapi import AsyncHookClient
    from hookapi.logging import HookHandler

    # An hour per attempt: only the handler's drain_timeout can let the process end.
    client = AsyncHookClient.from_url(sys.argv[1], timeout=3600.0)
    logging.getLogger().addHandler(HookHandler(client, drain_timeout=0.5))
    logging.getLogger("job").error("the nightly job failed")
    print("logged", flush=True)
    # no close(): logging.shutdown() at exit drains for half a second, then gives up
    """
)


@pytest.mark.socket
def test_a_process_whose_hook_never_answers_exits_after_the_drain_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=8) as server:
        # Connections complete in the listen backlog; nothing ever reads or answers them.
        port = server.getsockname()[1]
        url = f"http://127.0.0.1:{port}/{HOOK_ID}/{SECRET}"
        done = subprocess.run(
            [sys.executable, "-c", SILENT_CHILD, url],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,  # a guard only: without the drain's bound, this would be an hour
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "logged\n"
    assert SECRET not in done.stderr


FORK_CHILD = textwrap.dedent(
    """
    import logging, os, sys
    from hookapi.logging import HookHandler

    log = logging.getLogger("job")
    log.propagate = False
    handler = HookHandler(sys.argv[1], drain_timeout=10.0, backend=sys.argv[2])
    log.addHandler(handler)
    log.error("before the fork")  # the parent's thread is running now
    pid = os.fork()
    if pid == 0:
        # The child: the parent's thread is not here; the first record starts its own.
        log.error("from the child")
        handler.close()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    log.error("from the parent after the fork")
    handler.close()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.socket
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_forked_child_delivers_through_a_thread_of_its_own(backend: str) -> None:
    """A fork right after the first record: the parent's thread is still starting up.

    The child starts a thread of its own at its first record; what the parent had queued is
    the parent's to deliver (sent once, not twice).
    """
    emulator = Emulator(per_hour=60, per_day=1000)
    hook = emulator.create_hook("Jobs")
    with serve_in_thread(emulator) as server:
        done = subprocess.run(
            [sys.executable, "-c", FORK_CHILD, hook.url_for(server.url), backend],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert sorted(m.text for m in emulator.messages()) == [
        "before the fork",
        "from the child",
        "from the parent after the fork",
    ]


def test_a_backend_that_is_not_installed_is_refused_at_construction(
    emulator: Emulator, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if trio were not installed: anyio's backend for it cannot import it.
    monkeypatch.delitem(sys.modules, "anyio._backends._trio")
    monkeypatch.setitem(sys.modules, "trio", None)
    with pytest.raises(InvalidInputError, match="backend='trio' needs trio installed"):
        HookHandler(make_client(emulator, hook), backend="trio")


@pytest.mark.anyio
async def test_the_secret_never_appears_in_what_the_handler_says_about_itself(
    emulator: Emulator,
    hook: Hook,
    logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Digests' summaries, dropped-count notes, hookapi's log lines, logging's error reports."""
    caplog.set_level(logging.DEBUG, logger="hookapi")
    handler = HookHandler(make_client(emulator, hook), capacity=20, drain_timeout=math.inf)
    logger.addHandler(handler)
    told = [repr(handler)]
    async with handler.delivering():
        for i in range(3):  # the burst, then the pace: what waits is joined into digests
            logger.error("payment %d failed", i)
        await anyio.sleep(1)
        for i in range(3, 60):  # no await: the queue of 20 overflows
            logger.error("payment %d failed", i)
        broken = logger.makeRecord(logger.name, logging.ERROR, "app.py", 1, "%d", ("x",), None)
        handler.handle(broken)  # logging's own error report, on stderr
        await anyio.sleep(1)
        for i in range(60, 90):
            logger.error("payment %d failed", i)
    texts = posted(emulator)
    joined = "\n".join(texts)
    assert "records were dropped: the log handler's queue of 20 was full" in joined
    assert "record was dropped: formatting raised TypeError" in joined
    assert SUMMARY.search(joined)  # a digest's summary
    told += [*texts, caplog.text, capsys.readouterr().err]
    told += [logging.Formatter().format(record) for record in caplog.records]
    said = "\n".join(told)
    assert "Logging error" in said
    assert "***" in said  # the URL was named, redacted
    assert hook.secret not in said
    assert hook.secret[:16] not in said


@pytest.mark.anyio
async def test_without_a_thread_records_wait_for_the_next_delivering_block(
    emulator: Emulator, hook: Hook, logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    handler = HookHandler(make_client(emulator, hook), thread=False, capacity=3)
    logger.addHandler(handler)
    logger.error("payment %d failed", 0)  # before startup: it waits
    async with handler.delivering():
        logger.error("payment %d failed", 1)
    logger.error("payment %d failed", 2)  # between two blocks: it waits again
    assert posted(emulator) == ["payment 0 failed", "payment 1 failed"]
    async with handler.delivering():
        pass
    assert posted(emulator)[2:] == ["payment 2 failed"]
    for i in range(3, 8):  # after the last block: three wait, two are dropped
        logger.error("payment %d failed", i)
    assert handler.dropped == 2
    assert not any(t.name == "hookapi-log-handler" for t in threading.enumerate())
    handler.close()
    assert "closed with 5 record(s) never delivered" in caplog.text
    assert hook.secret not in caplog.text
    assert len(posted(emulator)) == 3


@pytest.mark.anyio
async def test_with_its_thread_running_a_delivering_block_is_refused(
    emulator: Emulator, hook: Hook, logger: logging.Logger
) -> None:
    options = {"loop_factory": VirtualTimeEventLoop}
    handler = HookHandler(make_client(emulator, hook), backend_options=options)
    logger.addHandler(handler)
    logger.error("payment %d failed", 0)  # starts the thread
    with pytest.raises(RuntimeError, match="already delivering"):
        async with handler.delivering():
            pass  # pragma: no cover
    with pytest.raises(InvalidInputError, match="thread must be True or False"):
        HookHandler(make_client(emulator, hook), thread=1)  # type: ignore[arg-type]


class Blocking(httpx.AsyncBaseTransport):
    """A hook whose transport blocks the handler's event loop until released (a stuck thread)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        self.release.wait()  # blocks the loop itself: no timeout or cancellation reaches it
        return httpx.Response(200, text="ok")


def test_close_says_so_when_the_thread_outlives_its_drain(
    emulator: Emulator, hook: Hook, logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    # A thread stuck past its drain (a lock held across a fork, a blocking call on its loop)
    # loses what it holds with the process: close() must say so, not return in silence.
    blocking = Blocking()
    handler = HookHandler(make_client(emulator, hook, transport=blocking), drain_timeout=0.01)
    logger.addHandler(handler)
    logger.error("payment %d failed", 0)
    assert blocking.entered.wait(60)
    logger.error("payment %d failed", 1)
    thread = next(t for t in threading.enumerate() if t.name == "hookapi-log-handler")
    try:
        handler.close()
        assert thread.is_alive()
        warned = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
        assert len(warned) == 1
        assert "up to 2 record(s) may never be delivered" in warned[0]
        assert hook.secret not in warned[0]
    finally:
        blocking.release.set()
        thread.join(60)
    assert not thread.is_alive()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_threads_imports_are_done_before_it_starts(backend: str) -> None:
    # A fork while the handler's thread imports leaves the child a half-run module (seen:
    # "partially initialized module 'httpcore'", the child's records lost): the thread's path
    # is imported on the constructing thread, which is the one that may fork.
    code = textwrap.dedent(
        """
        import sys
        from hookapi.logging import HookHandler
        HookHandler("http://127.0.0.1:9/h1/" + "ab" * 16, backend=sys.argv[1])
        wanted = {
            "asyncio": ["anyio._backends._asyncio"],
            "trio": ["anyio._backends._trio", "hookapi._http._core", "httpcore._backends.trio"],
        }[sys.argv[1]]
        print(",".join(name for name in wanted if name not in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, backend],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
