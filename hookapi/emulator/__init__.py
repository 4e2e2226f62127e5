"""A local Hook API that behaves as the service's published contract says.

The emulator answers ``POST /{hook_id}/{secret}/message`` as the service does (200 ``ok``,
401, 400, 404, 405, the four ``X-Rate-Limit-*`` headers on every answer), counts each hook's
quota over fixed (UTC clock hours and days) or sliding windows on its :class:`Clock`, answers
429 with ``Retry-After`` when it is used up, and injects faults on demand. Reach it in process
(:meth:`Emulator.transport`), over a real socket (:meth:`Emulator.serve`, :meth:`Emulator.run`),
or mount :attr:`Emulator.app` in any ASGI server. It needs nothing beyond the SDK's own
dependencies.

Example:
    >>> from hookapi.emulator import Emulator
    >>> emulator = Emulator(per_hour=100, per_day=1000, window="sliding")
    >>> hook = emulator.create_hook("Releases")
    >>> hook
    Hook(id='...', secret='***', desktop='Releases', base_url='http://emulator.localhost')
"""

from __future__ import annotations

from ._clock import Clock, LoopClock, ScaledClock
from ._emulator import Emulator
from ._models import (
    IN_PROCESS_BASE_URL,
    Fault,
    FaultKind,
    Hook,
    PostedMessage,
    QuotaState,
    Window,
)
from ._server import Server

__all__ = [
    "IN_PROCESS_BASE_URL",
    "Clock",
    "Emulator",
    "Fault",
    "FaultKind",
    "Hook",
    "LoopClock",
    "PostedMessage",
    "QuotaState",
    "ScaledClock",
    "Server",
    "Window",
]
