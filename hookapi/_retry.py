"""When to try again and how long to wait: :class:`RetryPolicy` and the tenacity machinery.

This is the only module that imports tenacity. Each call gets its own ``AsyncRetrying`` (a
shared one would mix the state of concurrent calls), sleeps through anyio so virtual clocks
drive it, and re-raises the last error itself, never ``tenacity.RetryError``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    Delivery,
    HookAPIError,
    InvalidInputError,
    RateLimitError,
    builds,
)

if TYPE_CHECKING:
    import tenacity

__all__ = ["RetryPolicy", "call_with_retries"]

logger = logging.getLogger("hookapi")

T = TypeVar("T")

DEFAULT_RETRY_STATUSES = frozenset({429, 500, 503})


def _check_seconds(name: str, value: float, *, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"RetryPolicy.{name} must be a number of seconds.")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise InvalidInputError(
            f"RetryPolicy.{name} must be {'>= 0' if allow_zero else '> 0'} seconds, not {value!r}."
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How :meth:`~hookapi.AsyncHookClient.post_message` retries, and how long a call may take.

    Retried: the statuses in ``retry_statuses`` (429, 500 and 503 by default) and failures that
    happened before the request could leave (connect errors and timeouts). A failure after the
    request may have reached the service (read timeout, connection lost mid-answer, 502/504) is
    retried only with ``retry_unknown_delivery=True``, since it may post the message twice.

    The wait before attempt *n + 1* honours ``Retry-After`` when the answer has one (and gives
    up if it asks for more than ``max_retry_after``, unless the call's deadline is infinite:
    ``math.inf`` waits as long as the service asks); otherwise it is drawn uniformly from
    ``[0, min(max_delay, initial_delay * 2**(n - 1))]`` ("full jitter"). Retrying stops after
    ``max_attempts``, or as soon as the next wait would reach ``deadline``; the last error is
    raised.

    Attributes:
        max_attempts: Requests started at most per call (1 disables retries).
        initial_delay: Seconds: the ceiling of the first backoff.
        max_delay: Seconds: the largest backoff ceiling.
        deadline: Seconds one call may take in all: attempts, backoff and throttle waits.
        retry_statuses: HTTP statuses worth another attempt.
        max_retry_after: Seconds: the longest ``Retry-After`` the policy will wait for, when
            the call's deadline is finite.
        retry_unknown_delivery: Also retry when the message may already have been delivered.
        jitter: Draw backoff at random (``False`` waits the full ceiling, handy in tests).

    Example:
        >>> policy = RetryPolicy(max_attempts=6, deadline=30.0)
        >>> policy.max_attempts, RetryPolicy.disabled().max_attempts
        (6, 1)
    """

    max_attempts: int = 4
    initial_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 60.0
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    max_retry_after: float = 60.0
    retry_unknown_delivery: bool = False
    jitter: bool = True

    @builds
    def __post_init__(self) -> None:
        attempts: object = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise InvalidInputError("RetryPolicy.max_attempts must be an int.")
        if self.max_attempts < 1:
            raise InvalidInputError(
                f"RetryPolicy.max_attempts must be at least 1, not {self.max_attempts}."
            )
        _check_seconds("initial_delay", self.initial_delay)
        _check_seconds("max_delay", self.max_delay)
        _check_seconds("deadline", self.deadline, allow_zero=False)
        _check_seconds("max_retry_after", self.max_retry_after)
        statuses: object = self.retry_statuses
        if not isinstance(statuses, frozenset) or not all(
            isinstance(s, int) and 400 <= s <= 599 for s in statuses
        ):
            raise InvalidInputError(
                "RetryPolicy.retry_statuses must be a frozenset of HTTP error statuses (400-599)."
            )

    @classmethod
    def disabled(cls, *, deadline: float = 60.0) -> RetryPolicy:
        """A policy that makes one attempt only (throttling still applies)."""
        return cls(max_attempts=1, deadline=deadline)

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt under this policy."""
        if not isinstance(exc, HookAPIError):
            return False  # cancellation and bugs are never retried
        if isinstance(exc, RateLimitError) and exc.local:
            return False  # the client itself found the quota cannot come back in time
        if exc.delivery is Delivery.UNKNOWN and not self.retry_unknown_delivery:
            return False
        if isinstance(exc, APIStatusError):
            if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                return False
            return exc.status_code in self.retry_statuses
        return isinstance(exc, APIConnectionError)

    def backoff(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if isinstance(exc, APIStatusError) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(self.max_delay, self.initial_delay * 2 ** min(attempt - 1, 64))
        return random.uniform(0.0, ceiling) if self.jitter else ceiling  # noqa: S311


async def call_with_retries(
    policy: RetryPolicy,
    attempt: Callable[[int], Awaitable[T]],
    *,
    deadline_at: float,
    what: str,
) -> T:
    """Run ``attempt(n)`` for n = 1, 2, ... until it succeeds or the policy says stop.

    Args:
        policy: The retry policy.
        attempt: Makes attempt number ``n``; raises a :class:`HookAPIError` on failure.
        deadline_at: The absolute ``anyio.current_time()`` no wait may cross.
        what: A redacted description of the request, for log records.

    Raises:
        HookAPIError: The last attempt's error, once retrying stops.
    """
    # The first attempt runs without tenacity: most calls succeed at once, and building the
    # retry machinery for them would cost more than the rest of the call. On a retryable
    # failure, tenacity takes over and is shown that failure first, so it decides every wait.
    try:
        return await attempt(1)
    except HookAPIError as exc:
        if policy.max_attempts == 1 or not _worth_retrying(policy, exc, deadline_at):
            raise
        first_failure = exc
    import tenacity  # noqa: PLC0415  (only calls that need a retry pay for importing it)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        # A wait that ends at the deadline leaves no time to send: the last error stands.
        return anyio.current_time() + state.upcoming_sleep >= deadline_at

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return policy.backoff(state.attempt_number, exc)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.info(
            "hookapi: %s: attempt %d of %d failed (%s); retrying in %.3f s",
            what,
            state.attempt_number,
            policy.max_attempts,
            _reason(exc),
            state.upcoming_sleep,
            extra={
                "hookapi_event": "retry",
                "hookapi_attempt": state.attempt_number,
                "hookapi_delay": state.upcoming_sleep,
            },
        )

    counter = 0

    async def numbered() -> T:
        nonlocal counter
        counter += 1
        if counter == 1:
            raise first_failure
        return await attempt(counter)

    retrying = tenacity.AsyncRetrying(
        sleep=anyio.sleep,
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception(lambda exc: _worth_retrying(policy, exc, deadline_at)),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(numbered)


def _worth_retrying(policy: RetryPolicy, exc: BaseException, deadline_at: float) -> bool:
    """``policy.should_retry``, except that a call with no deadline waits any ``Retry-After``.

    ``max_retry_after`` protects a deadline from a wait it cannot afford; a call told to wait
    as long as it takes (``deadline=math.inf``) can afford any.
    """
    if policy.should_retry(exc):
        return True
    return (
        math.isinf(deadline_at)
        and isinstance(exc, APIStatusError)
        and exc.retry_after is not None
        and exc.status_code in policy.retry_statuses
        and exc.delivery is not Delivery.UNKNOWN
    )


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, APIStatusError):
        return f"status {exc.status_code}"
    return type(exc).__name__
