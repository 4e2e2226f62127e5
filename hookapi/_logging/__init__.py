"""What :mod:`hookapi.logging` offers, kept apart: the handler, its queue and pump, digests."""

from __future__ import annotations

from ._handler import NEVER_SENT, HookHandler

__all__ = ["NEVER_SENT", "HookHandler"]
