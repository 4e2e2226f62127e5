"""What a caller holds for each message it put: the :class:`Receipt`, its states and errors.

A receipt is the one object a producer keeps: it says where its message is now and lets it
wait for the end (the answer, or the reason there will be none). The outbox's own errors live
here too, as every one of them ends up on a receipt or is raised by ``put``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import anyio

from .._client import PostResult
from .._exceptions import Delivery, HookAPIError

__all__ = [
    "DeadLetter",
    "MessageDroppedError",
    "OutboxClosedError",
    "OutboxFullError",
    "Receipt",
    "ReceiptState",
]


class ReceiptState(enum.StrEnum):
    """Where a message is.

    Attributes:
        QUEUED: Accepted (and, with a durable store, committed); waiting for its turn.
        SENDING: Being posted: waiting for quota, on the wire, or between retries.
        DELIVERED: The service answered 200: it is posted.
        FAILED: Refused for good (a 400, say); kept as a dead letter with its error.
        DROPPED: Given up unsent: its ``ttl`` passed, or ``on_full="drop_oldest"`` made room.
        UNKNOWN: Sent, and the answer was lost (``delivery="at_most_once"`` never resends it);
            kept as a dead letter.
    """

    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """Whether the message will not change state any more (short of a retry)."""
        return self not in (ReceiptState.QUEUED, ReceiptState.SENDING)


class OutboxFullError(HookAPIError):
    """``put`` found the outbox holding ``max_size`` messages, with ``on_full="raise"``."""


class OutboxClosedError(HookAPIError, RuntimeError):
    """The outbox is not running: not started yet, or closed (``put`` refused, or not sent)."""


class MessageDroppedError(HookAPIError):
    """The message was given up unsent: its ``ttl`` passed, or newer messages needed the room."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A message the outbox gave up on, kept until retried or discarded.

    Attributes:
        id: The message's id (its receipt's).
        text: The message.
        state: ``FAILED`` (refused for good) or ``UNKNOWN`` (may have been posted).
        reason: The error, as a sentence (kept by a durable store across restarts).
        error: The error itself, when it happened in this run (``None`` after a restart).
    """

    id: int
    text: str
    state: ReceiptState
    reason: str
    error: HookAPIError | None = None


class Receipt:
    """One message put into an :class:`~hookapi.Outbox`: its id, its state, and its outcome.

    Await :meth:`wait` for the end: it returns the :class:`~hookapi.PostResult` once posted,
    or raises why the message was not (the service's error, :class:`MessageDroppedError`, or
    :class:`OutboxClosedError` when the outbox closed first and kept it for the next start).
    """

    __slots__ = ("_done", "_error", "_result", "digest", "expires_at", "id", "state", "text")

    def __init__(self, id: int, text: str, *, expires_at: float | None = None) -> None:
        self.id = id
        self.text = text
        self.state = ReceiptState.QUEUED
        #: When (``anyio.current_time()``) the message is dropped if not sent; ``None``: never.
        self.expires_at = expires_at
        #: Delivered in a digest (``Outbox(coalesce=...)``): the id of the digest's first
        #: message, whose answer this receipt shares; ``None`` when posted on its own.
        self.digest: int | None = None
        self._result: PostResult | None = None
        self._error: HookAPIError | None = None
        self._done: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Receipt id={self.id} state={self.state.value}>"

    @property
    def result(self) -> PostResult | None:
        """The answer, once delivered."""
        return self._result

    @property
    def error(self) -> HookAPIError | None:
        """Why the message was not delivered, once that is final (or the outbox closed)."""
        return self._error

    @property
    def done(self) -> bool:
        """Whether :meth:`wait` would return or raise at once."""
        return self.state.is_final or self._error is not None

    async def wait(self) -> PostResult:
        """Wait until the message is delivered, given up, or left behind by a closing outbox.

        Returns:
            What the service answered.

        Raises:
            HookAPIError: The reason it was not delivered: the service's error (``FAILED`` or
                ``UNKNOWN``), :class:`MessageDroppedError` or :class:`OutboxClosedError`.
        """
        if not self.done:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        if self._result is not None:
            return self._result
        assert self._error is not None
        raise self._error

    def _settle(
        self, state: ReceiptState, *, result: PostResult | None = None, error: HookAPIError | None
    ) -> None:
        self.state = state
        self._result = result
        self._error = error
        if self._done is not None:
            self._done.set()

    def _requeue(self) -> None:
        self.state = ReceiptState.QUEUED
        self.digest = None


def dropped_error(receipt: Receipt, why: str) -> MessageDroppedError:
    """The error a dropped message's receipt raises."""
    return MessageDroppedError(
        f"Message {receipt.id} was dropped: {why}.", delivery=Delivery.NOT_SENT
    )
