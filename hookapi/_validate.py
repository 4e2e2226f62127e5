"""Checks on what users pass in, run before any request is made.

Each raises :class:`~hookapi.InvalidInputError` with a sentence naming what was wrong, and
never quotes a secret.
"""

from __future__ import annotations

import ipaddress
import json
import math

import httpx

from ._exceptions import InvalidInputError

__all__ = [
    "InsecureURLError",
    "check_base_url",
    "check_proxy",
    "check_timeout",
    "encode_message",
    "is_loopback",
]


class InsecureURLError(InvalidInputError):
    """Plain ``http://`` to a host that is not loopback, refused to keep the secret off the wire.

    Its own class so that a caller with other words for the way out (the command line's
    ``--allow-insecure-http``) can say so.

    Attributes:
        netloc: The host and port the URL named (never the path, which holds the secret).
    """

    def __init__(self, message: str, *, netloc: str) -> None:
        super().__init__(message)
        self.netloc = netloc


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


def check_base_url(base_url: str | httpx.URL, *, allow_insecure_http: bool) -> httpx.URL:
    """Return ``base_url`` parsed, or raise if the secret would not be safe sent there."""
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


def encode_message(text: object) -> bytes:
    """Return the JSON request body for ``text``, or raise if it is not a postable message."""
    if not isinstance(text, str):
        raise InvalidInputError(f"The message must be a str, not {type(text).__name__}.")
    if not text.strip():
        raise InvalidInputError("The message must not be empty or only whitespace.")
    body = json.dumps({"message": text}, ensure_ascii=False, separators=(",", ":"))
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
