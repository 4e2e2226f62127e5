"""The Lua scripts of the shared outbox, each applied atomically by Redis.

They live beside this module as ``.lua`` files: ``_keys.lua`` (the keys, described there,
and the fencing check) goes before each script's own body. Every key of a hook sits under one
hash tag, so that Redis Cluster keeps them in one slot and a script may touch them all.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["KEY_NAMES", "SCRIPTS"]

#: The keys every script is given, in this order (see ``_keys.lua``).
KEY_NAMES = (
    "seq",
    "msgs",
    "state",
    "reason",
    "live",
    "dead",
    "deadver",
    "lease",
    "fence",
    "owner",
    "outcome",
    "outcome_at",
)

_NAMES = (
    "add",
    "acquire",
    "renew",
    "release",
    "claim",
    "mark",
    "settle",
    "sync",
    "discard",
    "retry",
)


def _script(name: str) -> str:
    here = files(__package__)
    return "".join((here / part).read_text(encoding="utf-8") for part in ("_keys.lua", name))


#: Each script's whole text, by name.
SCRIPTS = {name: _script(f"{name}.lua") for name in _NAMES}
