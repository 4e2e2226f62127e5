"""The hook secret as a credential: a value that never prints, and the URL redaction built on it.

The secret sits in the URL path, so every place that shows a URL (errors, logs, reprs) goes
through :func:`redact_url` or only ever sees the placeholder.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["PLACEHOLDER", "Secret", "check_token"]

#: Stands in for the secret in every URL the SDK builds, shows or logs.
PLACEHOLDER: Final = "***"

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def check_token(value: object, *, what: str, show: bool) -> str:
    """Return ``value`` if it is a safe path segment, else raise ``ValueError``.

    A hook id or secret holding ``/``, ``..``, ``?``, ``#``, ``%`` or whitespace could
    redirect the request elsewhere, so only ``[A-Za-z0-9_-]`` is accepted.

    Args:
        value: The candidate id or secret.
        what: Its name in the error message.
        show: Whether the value may appear in the error message (never for the secret).
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}.")
    if not value:
        raise ValueError(f"{what} must not be empty.")
    if _TOKEN.fullmatch(value) is None:
        shown = f" {value!r}" if show else ""
        raise ValueError(
            f"{what}{shown} may only hold letters, digits, '-' and '_' "
            "(anything else could change where the request goes)."
        )
    return value


class Secret:
    """A hook secret that hides itself from ``repr``, ``str`` and formatting.

    Only :meth:`reveal` gives the value, so it cannot slip into a log line or an f-string.

    Example:
        >>> s = Secret("abc123")
        >>> s, str(s), f"{s}"
        (Secret('***'), '***', '***')
        >>> s.reveal()
        'abc123'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = check_token(value, what="secret", show=False)

    def reveal(self) -> str:
        """Return the secret itself; call this only where the request is finally sent."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{PLACEHOLDER}')"

    def __str__(self) -> str:
        return PLACEHOLDER

    def __format__(self, format_spec: str) -> str:
        return PLACEHOLDER

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac  # noqa: PLC0415  (rarely used: keep import time low)

        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        # Pickling would copy the credential into whatever stores the pickle.
        raise TypeError("a hookapi Secret cannot be pickled")
