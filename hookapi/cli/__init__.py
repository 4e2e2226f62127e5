"""The ``hookapi`` command line: ``demo``, ``send`` and ``serve``.

Only the parser is imported up front so that ``hookapi --help`` stays quick; each command
imports what it needs when it runs. The core never imports this package.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
