"""The emulator's state: hooks, messages, quotas, faults and the tally of answers.

Every change is synchronous (no ``await`` between checking the quota and counting a request),
so the state needs no lock and requests from many tasks cannot race each other.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Final

from ._clock import to_utc
from ._faults import FaultPlan
from ._models import Hook, PostedMessage, QuotaState, Window
from ._quota import QuotaCounter, make_counter

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["State", "check_count", "check_seconds"]

_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]+")
# Compared against when the hook id is unknown, so that a wrong id costs the same time as a
# wrong secret and the answer time does not tell which hook ids exist.
_DUMMY_SECRET: Final = b"0" * 64


def check_seconds(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number of seconds >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}.")
    return float(value)


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int of at least 1, not {value!r}.")
    return value


def _check_token(name: str, value: object) -> str:
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        # Never echo the value: it may be a secret.
        raise ValueError(f"{name} must be a non-empty str of letters, digits, '-' and '_'.")
    return value


def _check_desktop(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"desktop must be a non-empty str, not {value!r}.")
    return value


class State:
    """What the emulator knows; the ASGI app reads and changes it, the facade shows it."""

    def __init__(
        self,
        *,
        per_hour: int,
        per_day: int,
        window: Window,
        clock: Clock,
        fault_rate: float,
        latency: float,
        max_body_bytes: int,
        seed: int | None,
        base_url: str,
    ) -> None:
        if window not in ("fixed", "sliding"):
            raise ValueError(f"window must be 'fixed' or 'sliding', not {window!r}.")
        self.per_hour = check_count("per_hour", per_hour)
        self.per_day = check_count("per_day", per_day)
        self.window: Window = window
        self.clock = clock
        self.latency = check_seconds("latency", latency)
        self.max_body_bytes = check_count("max_body_bytes", max_body_bytes)
        self.base_url = base_url
        self.faults = FaultPlan(fault_rate=fault_rate, seed=seed)
        self.hooks: dict[str, Hook] = {}
        self.quotas: dict[str, QuotaCounter] = {}
        self.messages: dict[str, list[PostedMessage]] = {}
        self.all_messages: list[PostedMessage] = []
        self.status_counts: Counter[int] = Counter()

    def add_hook(self, desktop: str, *, hook_id: str | None, secret: str | None) -> Hook:
        """Create a hook, with a fresh UUID and 64-hex-character secret unless given."""
        desktop = _check_desktop(desktop)
        hook_id = str(uuid.uuid4()) if hook_id is None else _check_token("id", hook_id)
        secret = secrets.token_hex(32) if secret is None else _check_token("secret", secret)
        if hook_id in self.hooks:
            raise ValueError(f"A hook with id {hook_id!r} already exists.")
        hook = Hook(id=hook_id, secret=secret, desktop=desktop, base_url=self.base_url)
        self.hooks[hook_id] = hook
        self.quotas[hook_id] = make_counter(
            self.window, per_hour=self.per_hour, per_day=self.per_day
        )
        self.messages[hook_id] = []
        return hook

    def hook(self, hook: Hook | str) -> Hook:
        """The hook with this id (or this hook's id); ``KeyError`` if there is none."""
        hook_id = hook.id if isinstance(hook, Hook) else hook
        try:
            return self.hooks[hook_id]
        except KeyError:
            raise KeyError(f"The emulator has no hook with id {hook_id!r}.") from None

    def authenticate(self, hook_id: str, secret: str) -> Hook | None:
        """The hook these credentials open, or ``None``; the secret is compared in constant time."""
        hook = self.hooks.get(hook_id)
        expected = _DUMMY_SECRET if hook is None else hook.secret.encode()
        given = secret.encode("utf-8", "surrogatepass")
        matches = hmac.compare_digest(given, expected)
        return hook if matches and hook is not None else None

    def now(self) -> float:
        """The clock's time, in UTC seconds since the epoch."""
        return self.clock()

    def quota(self, hook_id: str) -> QuotaState:
        """The quota of ``hook_id`` now."""
        return self.quotas[hook_id].state(self.now())

    def totals(self) -> QuotaState:
        """The configured totals with nothing used: the headers of answers tied to no hook."""
        return QuotaState(
            window=self.window,
            per_hour=self.per_hour,
            per_day=self.per_day,
            used_hour=0,
            used_day=0,
        )

    def post(self, hook: Hook, text: str) -> PostedMessage:
        """Record ``text`` as posted by ``hook`` now."""
        now = self.now()
        message = PostedMessage(
            text=text,
            received_at=to_utc(now),
            desktop=hook.desktop,
            hook_id=hook.id,
            received_monotonic=now,
        )
        self.messages[hook.id].append(message)
        self.all_messages.append(message)
        return message
