"""Which event loop is running: resources bound to one loop check it before they are used."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["current_loop", "loop_mismatch"]


def current_loop() -> object | None:
    """The running asyncio loop, or trio's token for the current run; None outside both."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")  # imported only if trio is what runs
    if trio is None:
        return None
    try:
        token: object = trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
    return token


def loop_mismatch(owner: str, bound: object | None) -> str | None:
    """The error text if the running loop is not ``bound`` (the first one ``owner`` ran on)."""
    if bound is None or bound is current_loop():
        return None
    return (
        f"This {owner} was first used on another event loop and cannot be used on this one: its "
        "connections and locks belong to that loop. Create the client inside the loop that "
        "uses it (for example in an async fixture or in main()), or make one per loop."
    )
