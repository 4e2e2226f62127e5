"""Never run: mypy checks here that the emulator's and the testing kit's public types hold."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import assert_type

import httpx

from hookapi import AsyncHookClient
from hookapi.emulator import (
    Clock,
    Emulator,
    Fault,
    Hook,
    LoopClock,
    PostedMessage,
    QuotaState,
    ScaledClock,
    Server,
    Window,
)
from hookapi.testing import VirtualTimeEventLoop, assert_posted, make_client, scripted_faults


def check_emulator(emulator: Emulator) -> None:
    hook = emulator.create_hook("Ops", id=None, secret=None)
    assert_type(hook, Hook)
    assert_type(hook.url, str)
    assert_type(emulator.hooks(), list[Hook])
    assert_type(emulator.desktops(), list[str])
    assert_type(emulator.messages(hook), list[PostedMessage])
    assert_type(emulator.messages(hook.id), list[PostedMessage])
    assert_type(emulator.quota(hook), QuotaState)
    assert_type(emulator.quota(hook).remaining, int)
    assert_type(emulator.fail_next(503, retry_after=1.5), Fault)
    assert_type(emulator.fail_next("delay", delay=2.0), Fault)
    assert_type(emulator.pending_faults(), list[Fault])
    assert_type(emulator.faults_injected, dict[str, int])
    assert_type(emulator.status_counts, dict[int, int])
    assert_type(emulator.transport(), httpx.AsyncBaseTransport)
    assert_type(emulator.serve(port=0), AbstractAsyncContextManager[Server])
    assert_type(emulator.window, Window)
    assert_type(emulator.fault_rate, float)
    assert_type(emulator.clock, Clock)
    assert_type(emulator.messages()[0].received_at, datetime)
    assert_type(emulator.messages()[0].received_monotonic, float)


def check_clocks() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    scaled = ScaledClock(3600, start=start, timer=lambda: 0.0)
    assert_type(scaled(), float)
    assert_type(scaled.scale, float)
    assert_type(scaled.start, datetime)
    assert_type(LoopClock(start=start)(), float)
    clocks: list[Clock] = [scaled, LoopClock(), lambda: 0.0]
    Emulator(clock=scaled)
    Emulator(clock=lambda: 0.0)
    Emulator(clock=clocks[0])


def check_testing(emulator: Emulator, hook: Hook) -> None:
    assert_type(make_client(emulator, hook, timeout=1.0), AsyncHookClient)
    assert_type(assert_posted(emulator, hook, ["a"], ordered=False), None)
    with scripted_faults(emulator, 503, "drop") as faults:
        assert_type(faults, list[Fault])
    assert_type(VirtualTimeEventLoop().time(), float)
