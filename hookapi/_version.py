"""The package's version, readable by every module without importing the public face."""

from __future__ import annotations

__version__ = "0.1.0"
