"""The Lua scripts that keep one hook's shared quota in Redis, each applied atomically.

They live beside this module as ``.lua`` files (so that they read and lint as Lua): a shared
prelude (``_prelude.lua``: state, expiry, budget, saving), how reservations end
(``_ends.lua``), and one file per script, each run as prelude + ends + its own body.

Every script reads the time from Redis (``TIME``), so that machines with skewed clocks agree,
brings the hook's state up to date (expired leases, requests leaving the hour and the day),
and changes it. Keys get a TTL when a write may create them, and the fleet refreshes them all
about once a minute. Times inside Redis are in *quota seconds*: real seconds
times the store's time scale (1 outside tests and demos).

Keys, all under one hash tag so that Redis Cluster keeps a hook in one slot:
``state`` (hash), ``hour`` and ``day`` (hashes: time bucket -> requests counted),
``flight`` (sorted set: reservation -> lease end), ``queue`` (sorted set: waiting process ->
slots it took while others waited), ``waiting`` (sorted set: waiting process -> lease end)
``starts`` (hash: hour bucket -> when its earliest request started), ``parked`` (hash:
process that stopped waiting for a moment -> its place in the rounds) and ``refused`` (sorted
set: reservation -> when the service refused it, for the last hour; it lives an hour past its
last refusal).
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["BUDGET", "END", "KEY_NAMES", "RESERVE"]

KEY_NAMES = (
    "state",
    "hour",
    "day",
    "flight",
    "queue",
    "waiting",
    "starts",
    "parked",
    "refused",
)


def _script(name: str) -> str:
    """A script's whole text: the shared prelude, how reservations end, then its own body."""
    here = files(__package__)
    return "".join(
        (here / part).read_text(encoding="utf-8") for part in ("_prelude.lua", "_ends.lua", name)
    )


#: Ends what the process ended since its last call, then takes a slot or says when to ask again.
RESERVE = _script("reserve.lua")
#: Ends reservations when no reservation follows soon.
END = _script("end.lua")
#: The budget, for diagnostics and tests.
BUDGET = _script("budget.lua")
