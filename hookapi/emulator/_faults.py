"""Fault injection: the FIFO queue of scripted faults, the seeded random faults, and their tally.

Faults are split by where they strike. A *front* fault (429, 502, 503, 504, or a drop before
the message is handled) models a proxy, a maintenance page or the limiter itself, answers
before the limiter and is not counted against the quota. Every other fault strikes behind the
limiter, so it is taken only by a request the quota admits, and it is counted.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from typing import Final

from ._models import Fault

__all__ = ["FaultPlan", "check_fault_rate", "is_front"]

_FRONT_STATUSES: Final = frozenset({429, 502, 503, 504})
_RANDOM_STATUSES: Final = (500, 503)


def is_front(fault: Fault) -> bool:
    """Whether ``fault`` answers before the limiter (and so is not counted)."""
    if fault.kind == "drop":
        return not fault.posted
    return fault.kind in _FRONT_STATUSES


def check_fault_rate(value: object) -> float:
    """Return ``value`` as a float if it is a fraction in [0, 1], else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"fault_rate must be a number from 0 to 1, not {value!r}.")
    return float(value)


class FaultPlan:
    """The faults still to come, and the ones already injected.

    Args:
        fault_rate: The fraction of requests that get a random 500 or 503 when no scripted
            fault is waiting.
        seed: Seeds the random faults, so that a soak run can be replayed.
    """

    def __init__(self, *, fault_rate: float, seed: int | None) -> None:
        self.fault_rate = check_fault_rate(fault_rate)
        # Reproducible noise for tests, not security: a seeded Mersenne Twister is the point.
        self._random = random.Random(seed)  # noqa: S311
        self._queue: deque[Fault] = deque()
        self.injected: Counter[str] = Counter()

    def add(self, fault: Fault, *, times: int) -> None:
        """Queue ``fault`` for the next ``times`` requests it applies to."""
        self._queue.extend([fault] * times)

    def pending(self) -> list[Fault]:
        """The scripted faults not yet taken, first to strike first."""
        return list(self._queue)

    def clear(self) -> None:
        """Forget every scripted fault not yet taken."""
        self._queue.clear()

    def next_for(self, hook_id: str) -> Fault | None:
        """The fault the next request of ``hook_id`` would take, without taking it.

        A scripted fault wins; failing that, a random one is drawn (and then must be taken or
        forgotten by the caller, as it is not queued).
        """
        for fault in self._queue:
            if fault.hook_id in (None, hook_id):
                return fault
        if self.fault_rate and self._random.random() < self.fault_rate:
            return Fault(kind=self._random.choice(_RANDOM_STATUSES))
        return None

    def take(self, fault: Fault) -> None:
        """Mark ``fault`` as injected, removing it from the queue if it was scripted."""
        for index, queued in enumerate(self._queue):
            if queued is fault:
                del self._queue[index]
                break
        self.injected[fault.label] += 1
