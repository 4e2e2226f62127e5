"""The hook secret as a credential: a value that never prints, and the redaction built on it.

The secret sits in the URL path, so the SDK's own URLs only ever hold the placeholder, and every
text that comes from elsewhere (an error body, a header, an exception from below) goes through
:func:`redact` before it reaches an error or a log record. A server may echo the path changed:
upper-cased, percent-encoded, JSON- or HTML-escaped; :func:`redact` finds the secret in each.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["PLACEHOLDER", "Secret", "check_token", "redact", "shows"]

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


def _spellings(char: str) -> str:
    """A pattern for ``char`` as a server may write it back (matched ignoring case)."""
    code = ord(char)
    return (
        f"(?:{re.escape(char)}"
        f"|%(?:25)*{code:02x}"  # percent-encoded, once or more
        f"|\\\\+(?:u00|x){code:02x}"  # JSON or JavaScript escapes, escaped again or not
        f"|&#0*{code};?|&#x0*{code:x};?)"  # HTML character references
    )


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

    __slots__ = ("_pattern", "_value")

    def __init__(self, value: str) -> None:
        self._value = check_token(value, what="secret", show=False)
        self._pattern: re.Pattern[str] | None = None

    def _spelt(self) -> re.Pattern[str]:
        # Built on first use: most clients never see an error to redact.
        if self._pattern is None:
            pattern = "".join(_spellings(char) for char in self._value)
            self._pattern = re.compile(pattern, re.IGNORECASE)
        return self._pattern

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


def redact(text: str, secret: Secret) -> str:
    r"""``text`` with every spelling of ``secret`` replaced by :data:`PLACEHOLDER`.

    The secret is found in any case and with any of its characters percent-encoded (once or
    more), JSON-escaped (``\u0061``) or written as an HTML character reference, since a
    server or proxy echoing the request path may have changed it so.

    Example:
        >>> s = Secret("abc123")
        >>> redact("path /hook/ABC%31%323 and &#97;bc123", s)
        'path /hook/*** and ***'
    """
    return secret._spelt().sub(PLACEHOLDER, text)


def shows(text: str, secret: Secret) -> bool:
    """Whether ``text`` holds ``secret`` in any spelling :func:`redact` would replace."""
    return secret._spelt().search(text) is not None
