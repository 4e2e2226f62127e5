"""Checks on what users pass in, run before any request is made.

Each raises :class:`~hookapi.InvalidInputError` with a sentence naming what was wrong, and
never quotes a secret. A hook URL is split here and nowhere else (:func:`split_hook_url`): the
secret is one of its path segments, so a slip in the path (a segment too many, a misspelt
``message``) would otherwise move the secret to where the hook id or the base URL is shown.
"""

from __future__ import annotations

import ipaddress
import json.encoder
import math
import re
from typing import Final
from urllib.parse import unquote, urlsplit

import httpx

from ._exceptions import InsecureURLError, InvalidInputError
from ._secrets import Secret, check_token

__all__ = [
    "InsecureURLError",
    "check_base_url",
    "check_hook_id",
    "check_proxy",
    "check_timeout",
    "encode_message",
    "is_loopback",
    "looks_like_secret",
    "split_hook_url",
]

#: What the service's secrets look like (it shows 64 hex digits); its hook ids are UUIDs, with
#: dashes. A segment of this shape where an id or a base path is expected is a secret that moved.
_SECRET_SHAPE: Final = re.compile(r"[0-9A-Fa-f]{32,}")
#: Quotes a pasted URL may arrive wrapped in (straight and typographic).
_QUOTES: Final = ('"', "'", "\u201c", "\u201d", "\u2018", "\u2019")
#: "message" misspelt: another case, a plural, an extension (after percent-decoding).
_MESSAGE_SLIP: Final = re.compile(r"messages?(\.\w+)?", re.IGNORECASE)
_SHAPE: Final = "The hook URL must end with /{hook_id}/{secret} or /{hook_id}/{secret}/message"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``*.localhost`` or a loopback IP)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_host(url: httpx.URL) -> str:
    """The URL's host as text; raise if no resolver could look it up (IDNA rules, RFC 1035)."""
    try:
        host = url.host  # decodes "xn--" labels, which fail here if they are not valid IDNA
    except UnicodeError:
        raise InvalidInputError("base_url's host is not a valid internationalised name.") from None
    raw = url.raw_host
    if b":" in raw or not raw:  # an IPv6 literal, or no host at all (refused below)
        return host
    labels = raw.rstrip(b".").split(b".")
    if len(raw) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise InvalidInputError(
            "base_url's host is not a valid DNS name (labels of 1 to 63 characters, 253 in all)."
        )
    return host


def looks_like_secret(segment: str) -> bool:
    """Whether ``segment`` (percent-decoded) holds 32 or more hex digits in a row."""
    return _SECRET_SHAPE.search(unquote(segment)) is not None


def check_hook_id(hook_id: object, *, show: bool = True) -> str:
    """Return ``hook_id`` if it can be one, or raise without showing a secret.

    A hook id is shown in reprs, errors, log records and Redis key names, so a value with the
    shape of a secret (32 or more hex digits in a row: the secret pasted into the id, or a
    UUID without its dashes, which the service does not issue) is refused and never quoted.

    Args:
        hook_id: The candidate id.
        show: Whether the value may appear in the error message (not when it came from a
            hook URL: no path segment of one is ever shown).
    """
    if isinstance(hook_id, str) and looks_like_secret(hook_id):
        raise InvalidInputError(
            "hook_id has the shape of a secret (32 or more hex digits in a row), so it is not "
            "shown: the service's hook ids are UUIDs with dashes. Check that the id and the "
            "secret are not swapped."
        )
    try:
        return check_token(hook_id, what="hook_id", show=show)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(str(exc)) from None


def split_hook_url(url: object) -> tuple[httpx.URL, str, str]:
    """Split a hook URL into its base URL, hook id and secret, or raise without showing it.

    Exactly ``{base}/{hook_id}/{secret}`` and ``{base}/{hook_id}/{secret}/message`` are
    accepted, with one trailing slash allowed; ``{base}`` may have a path of its own. Anything
    else after the secret, a query, a fragment, a user name, an empty or a dot segment is
    refused, as is a percent-encoded hook id, secret or ``message`` (the service issues them as
    plain ``[A-Za-z0-9_-]``): guessing would move the secret to where the id or the base URL is
    shown. Errors name the problem and count the segments, and quote none of them.

    Returns:
        The base URL (its scheme and host not yet checked: the constructor does), the hook id
        and the secret.
    """
    if not isinstance(url, str):
        raise InvalidInputError(f"The hook URL must be a str, not {type(url).__name__}.")
    url = url.strip()
    if url.startswith(_QUOTES) or url.endswith(_QUOTES):
        raise InvalidInputError(
            "The hook URL is quoted: remove the quotes that came with it when it was pasted."
        )
    if "?" in url or "#" in url:
        raise InvalidInputError("The hook URL must not have a query or a fragment (? or #).")
    if "\\" in url:
        raise InvalidInputError("The hook URL must not hold a backslash.")
    try:
        parsed = httpx.URL(url)
        typed = urlsplit(url).path  # as typed: httpx has already removed "." and ".."
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raise InvalidInputError("The hook URL is not a valid URL.") from None
    if parsed.userinfo:
        raise InvalidInputError(
            "The hook URL must not hold a user name or password before its host."
        )
    if any(unquote(part) in (".", "..") for part in typed.split("/")):
        raise InvalidInputError(
            "The hook URL's path must not have '.' or '..' segments: they would move the "
            "request elsewhere."
        )
    segments = parsed.raw_path.decode("ascii").split("/")[1:]
    if segments and not segments[-1]:
        segments.pop()  # one trailing slash
    count = len(segments)
    counted = f"its path has {count} segment{'' if count == 1 else 's'} after the host"
    if "" in segments:
        raise InvalidInputError(f"{_SHAPE}: {counted}, one of them empty (a double slash).")
    if segments and segments[-1] == "message":
        segments.pop()
    elif segments and _MESSAGE_SLIP.fullmatch(unquote(segments[-1])):
        raise InvalidInputError(
            f"{_SHAPE} (in lower case, as written): {counted}, and the last is another "
            "spelling of 'message' (another case, a plural, an extension or percent-encoding)."
        )
    if len(segments) < 2:
        raise InvalidInputError(f"{_SHAPE}: {counted}, too few for a hook id and a secret.")
    *base_path, hook_id, secret = segments
    if any(_MESSAGE_SLIP.fullmatch(unquote(part)) for part in segments):
        raise InvalidInputError(f"{_SHAPE}: {counted}, and more follows 'message'.")
    if looks_like_secret(hook_id) or any(looks_like_secret(part) for part in base_path):
        raise InvalidInputError(
            f"{_SHAPE}: {counted}, and a segment before the secret's place has the shape of a "
            "secret (32 or more hex digits), so something follows the secret or the id and "
            "the secret are swapped."
        )
    if "%" in hook_id or "%" in secret:
        raise InvalidInputError(
            f"{_SHAPE}: {counted}, and the hook id or the secret is percent-encoded; the "
            "service issues them as plain letters, digits, '-' and '_'."
        )
    try:
        check_token(hook_id, what="hook_id", show=False)
        Secret(secret)
    except ValueError as exc:
        raise InvalidInputError(f"The hook URL's {exc}") from None
    base = parsed.copy_with(raw_path=("/" + "/".join(base_path)).encode("ascii"))
    return base, hook_id, secret


def check_base_url(base_url: str | httpx.URL, *, allow_insecure_http: bool) -> httpx.URL:
    """Return ``base_url`` parsed, or raise if the secret would not be safe sent there.

    A base URL may have a path (``https://host/hooks``), but not a segment with the shape of
    a secret: that is a hook URL passed whole, whose secret would be shown with the base.
    """
    try:
        url = httpx.URL(base_url)
    except (TypeError, httpx.InvalidURL, UnicodeError) as exc:
        raise InvalidInputError(f"base_url is not a valid URL ({exc}).") from None
    host = _check_host(url)
    if url.scheme not in ("http", "https") or not host:
        raise InvalidInputError("base_url must be an absolute http:// or https:// URL.")
    if url.userinfo:
        raise InvalidInputError("base_url must not hold a user name or password.")
    if url.query or url.fragment:
        raise InvalidInputError("base_url must not have a query or a fragment.")
    if any(looks_like_secret(part) for part in url.raw_path.decode("ascii").split("/")):
        raise InvalidInputError(
            "base_url's path has a segment with the shape of a secret (32 or more hex "
            "digits), so it is not shown: pass the hook URL to from_url, or the base URL "
            "without the hook id and secret."
        )
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(host):
        netloc = url.netloc.decode("ascii")
        raise InsecureURLError(
            f"base_url http://{netloc} is plain http to a host that is not loopback: "
            "the secret would cross the network in clear. Use https, or pass "
            "allow_insecure_http=True if you really mean it.",
            netloc=netloc,
        )
    return url


def check_proxy(proxy: object) -> httpx.URL:
    """Return ``proxy`` parsed, or raise (never quoting it: it may hold a password)."""
    if not isinstance(proxy, str | httpx.URL):
        raise InvalidInputError(f"proxy must be a str or httpx.URL, not {type(proxy).__name__}.")
    try:
        url = httpx.URL(proxy)
        _check_host(url)
    except (httpx.InvalidURL, InvalidInputError, UnicodeError):
        raise InvalidInputError("proxy is not a valid URL.") from None
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise InvalidInputError("proxy must be an http:// or https:// URL.")
    return url


_encode_string = json.encoder.encode_basestring  # the C encoder json.dumps uses for str


def encode_message(text: object) -> bytes:
    """Return the JSON request body for ``text``, or raise if it is not a postable message."""
    if not isinstance(text, str):
        raise InvalidInputError(f"The message must be a str, not {type(text).__name__}.")
    if not text.strip():
        raise InvalidInputError("The message must not be empty or only whitespace.")
    # What json.dumps({"message": text}, ensure_ascii=False, separators=(",", ":")) gives,
    # without building its encoder for every message.
    body = f'{{"message":{_encode_string(text)}}}'
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        # The encoder's index counts in the JSON body; the user wants the one in their text.
        index = next(i for i, char in enumerate(text) if "\ud800" <= char <= "\udfff")
        raise InvalidInputError(
            f"The message cannot be encoded as UTF-8: a lone surrogate "
            f"{text[index]!r} at index {index} of the text."
        ) from None


def check_timeout(name: str, value: object) -> float:
    """Return ``value`` as float seconds, or raise if it is not a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number of seconds, not {type(value).__name__}.")
    if math.isnan(value) or value <= 0:
        raise InvalidInputError(f"{name} must be more than 0 seconds, not {value!r}.")
    return float(value)
