"""``hookapi send`` and Ctrl-C: it stops cleanly and says what was and was not sent."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest

from hookapi.cli._common import ExitCode
from hookapi.emulator import Emulator

from .conftest import RunCLI, texts


class _CtrlCOn(httpx.AsyncBaseTransport):
    """Presses Ctrl-C during request number ``at``, while that request is on the wire."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, at: int) -> None:
        self._inner = inner
        self._at = at
        self._count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._count += 1
        if self._count == self._at:
            signal.raise_signal(signal.SIGINT)
            await anyio.sleep_forever()
        return await self._inner.handle_async_request(request)


def test_ctrl_c_says_what_was_and_was_not_sent(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    transport = _CtrlCOn(emulator.transport(), at=3)
    ran = cli("send", "--stdin", stdin="1\n2\n3\n4\n5\n", transport=transport)
    assert ran.code == ExitCode.INTERRUPTED
    assert (
        "hookapi send: interrupted: sent 2 of 5 messages (lines 1-2); line 3 may or may not "
        "have been posted; lines 4-5 were not sent."
    ) in ran.err
    assert texts(emulator) == ["1", "2"]


def test_ctrl_c_on_one_message_as_json(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    ran = cli("send", "--json", "hi", transport=_CtrlCOn(emulator.transport(), at=1))
    assert ran.code == ExitCode.INTERRUPTED
    assert json.loads(ran.out) == {
        "ok": False,
        "error": "Interrupted",
        "exit_code": 130,
        "delivery": "unknown",
    }


@contextmanager
def ctrl_c_when_logged(words: str) -> Iterator[None]:
    """Presses Ctrl-C whenever the client logs a record holding ``words``."""

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if words in record.getMessage():
                signal.raise_signal(signal.SIGINT)

    logger = logging.getLogger("hookapi")
    handler = Handler()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def ctrl_c_while_waiting_to_retry() -> Iterator[None]:
    """Presses Ctrl-C when the client logs that it will retry, before the wait starts."""
    with ctrl_c_when_logged("retrying in"):
        yield


@pytest.mark.usefixtures("ctrl_c_while_waiting_to_retry")
def test_ctrl_c_while_waiting_means_not_sent(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    emulator.fail_next(503, retry_after=30)
    ran = cli("send", "hi")
    assert ran.code == ExitCode.INTERRUPTED
    assert ran.err == "hookapi send: interrupted: the message was not sent.\n"
    assert texts(emulator) == []


@pytest.mark.usefixtures("ctrl_c_while_waiting_to_retry")
def test_ctrl_c_while_waiting_in_a_batch(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    cli("send", "first")
    emulator.fail_next(503, retry_after=30)
    ran = cli("send", "--stdin", stdin="a\nb\n")
    assert ran.code == ExitCode.INTERRUPTED
    assert "sent 0 of 2 messages; lines 1-2 were not sent." in ran.err


class _CtrlCWhileReading(httpx.AsyncBaseTransport):
    """Answers 200, then presses Ctrl-C while the client reads the body."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_StallingBody())


class _StallingBody(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        signal.raise_signal(signal.SIGINT)
        await anyio.sleep_forever()
        yield b""  # pragma: no cover  (never reached)


def test_ctrl_c_after_the_answer_arrived_means_posted(cli: RunCLI, hook_url: str) -> None:
    ran = cli("send", "hi", transport=_CtrlCWhileReading())
    assert ran.code == ExitCode.INTERRUPTED
    assert ran.err == "hookapi send: interrupted: the message was posted.\n"
    ran = cli("send", "--json", "hi", transport=_CtrlCWhileReading())
    assert json.loads(ran.out) == {
        "ok": True,
        "status_code": None,
        "attempts": None,
        "rate_limit": None,
        "interrupted": True,
    }


def test_ctrl_c_on_the_wire_without_json(cli: RunCLI, emulator: Emulator, hook_url: str) -> None:
    ran = cli("send", "hi", transport=_CtrlCOn(emulator.transport(), at=1))
    assert ran.code == ExitCode.INTERRUPTED
    assert ran.err == "hookapi send: interrupted: the message may or may not have been posted.\n"


@pytest.fixture
def ctrl_c_while_waiting_for_quota() -> Iterator[None]:
    """Presses Ctrl-C when the client logs that it waits for the quota."""
    with ctrl_c_when_logged("waiting up to"):
        yield


@pytest.mark.parametrize("emulator", [{"per_hour": 2, "window": "sliding"}], indirect=True)
@pytest.mark.usefixtures("ctrl_c_while_waiting_for_quota")
def test_stdin_waits_for_the_quota_until_ctrl_c(
    cli: RunCLI, emulator: Emulator, hook_url: str
) -> None:
    # Past the quota the third line waits for it (it used to fail at once): Ctrl-C says so.
    ran = cli("send", "--stdin", stdin="a\nb\nc\n")
    assert ran.code == ExitCode.INTERRUPTED
    assert "interrupted: sent 2 of 3 messages (lines 1-2); line 3 was not sent." in ran.err
    assert texts(emulator) == ["a", "b"]


def test_ctrl_c_after_the_answer_arrived_in_a_batch(cli: RunCLI, hook_url: str) -> None:
    ran = cli("send", "--stdin", stdin="a\nb\n", transport=_CtrlCWhileReading())
    assert ran.code == ExitCode.INTERRUPTED
    assert "interrupted: sent 1 of 2 messages (line 1); line 2 was not sent." in ran.err
