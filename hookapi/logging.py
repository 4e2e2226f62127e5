"""Send log records to a hook: :class:`HookHandler`, a standard :class:`logging.Handler`.

Attach it to your loggers (or configure it with :func:`logging.config.dictConfig`); it posts
records at ``ERROR`` and above by default, under the hook's quota, in digests when they come
faster than the quota allows. See :doc:`/logging` for recipes (dictConfig, FastAPI and
uvicorn, Django, structlog).
"""

from __future__ import annotations

from ._logging import NEVER_SENT, HookHandler

__all__ = ["NEVER_SENT", "HookHandler"]
