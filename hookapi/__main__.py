"""``python -m hookapi``: the same command line as the ``hookapi`` console script."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
