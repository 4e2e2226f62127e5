"""TLS settings as users give them, made into one ``ssl.SSLContext``, the way httpx reads them.

``verify`` is True (the ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` of the environment when
``trust_env``, else certifi's roots), a CA bundle path (a file, or a directory of hashed
certificates), an ``ssl.SSLContext`` used as it is, or False (no verification, loudly).
``cert`` is a client certificate: one PEM file holding the certificate and its key, or a
``(certificate, key)`` pair of paths.
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import httpx

from .._exceptions import InvalidInputError

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["CertTypes", "InsecureTLSWarning", "VerifyTypes", "tls_context"]

#: What ``verify=`` accepts.
VerifyTypes: TypeAlias = bool | str | os.PathLike[str] | ssl.SSLContext
#: What ``cert=`` accepts: a PEM file with certificate and key, or ``(certificate, key)``.
CertTypes: TypeAlias = (
    str | os.PathLike[str] | tuple[str | os.PathLike[str], str | os.PathLike[str]]
)

_PACKAGE = str(Path(__file__).resolve().parent.parent)
_logger = logging.getLogger("hookapi")


class InsecureTLSWarning(UserWarning):
    """TLS certificate verification is off (``verify=False``): the hook's secret is exposed.

    Whoever sits on the network path can then read every request, the secret in its URL
    included, and post as the hook's bot. Trust your network's CA instead (``verify=`` with its
    bundle, or ``SSL_CERT_FILE``).
    """


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside hookapi."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level += 1
        frame = frame.f_back
    return level


def _path(value: object, what: str) -> str:
    path = os.fspath(value)  # type: ignore[call-overload]
    if not isinstance(path, str) or not path:
        raise InvalidInputError(f"{what} must be a non-empty str path.")
    return path


def _trusting(path: str, what: str) -> ssl.SSLContext:
    """A verifying context that trusts the CA certificates at ``path`` (a file or a directory)."""
    try:
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        if os.path.isfile(path):
            return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidInputError(f"{what} {path!r} holds no usable CA certificate: {exc}.") from None
    raise InvalidInputError(f"{what} {path!r} is not a file or a directory.")


def _no_password() -> str:
    raise InvalidInputError("encrypted")


def _load_cert(context: ssl.SSLContext, cert: object) -> None:
    if isinstance(cert, tuple):
        if len(cert) != 2:
            raise InvalidInputError("cert must be a path, or a (certificate, key) pair of paths.")
        certfile, keyfile = _path(cert[0], "cert"), _path(cert[1], "cert's key")
    else:
        certfile, keyfile = _path(cert, "cert"), None
    shown = repr(certfile) if keyfile is None else f"{certfile!r} with key {keyfile!r}"
    try:
        # A password callback that refuses: OpenSSL would otherwise prompt on the terminal.
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except InvalidInputError:
        raise InvalidInputError(
            f"The client certificate's key ({shown}) is encrypted: load it into an "
            "ssl.SSLContext with its password (load_cert_chain) and pass that as verify=."
        ) from None
    except ssl.SSLError as exc:
        raise InvalidInputError(
            f"The client certificate {shown} is not a PEM certificate with its private key "
            f"({exc.reason or exc})."
        ) from None
    except OSError as exc:
        raise InvalidInputError(
            f"The client certificate {shown} cannot be read: {exc.strerror or exc}."
        ) from None


def tls_context(
    *, verify: object = True, cert: object = None, trust_env: bool = True
) -> ssl.SSLContext:
    """The ``ssl.SSLContext`` for ``verify``, ``cert`` and ``trust_env`` (see the module).

    Blocking file I/O (the CA bundle): call it where blocking is allowed, before the loop runs.

    Raises:
        InvalidInputError: A value of the wrong type, a path that is missing or holds no
            certificate, an encrypted key, or ``cert`` with a ready-made context.
    """
    if isinstance(verify, ssl.SSLContext):
        if cert is not None:
            raise InvalidInputError(
                "Pass cert= or an ssl.SSLContext as verify=, not both: load the client "
                "certificate into the context (load_cert_chain)."
            )
        return verify
    if verify is True:
        file, directory = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        if trust_env and file:
            context = _trusting(file, "SSL_CERT_FILE")
        elif trust_env and directory:
            context = _trusting(directory, "SSL_CERT_DIR")
        else:
            context = httpx.create_ssl_context(trust_env=False)
    elif verify is False:
        text = (
            "TLS certificate verification is off (verify=False): anyone on the network path "
            "can read the hook's secret and post as its bot. Pass verify= your CA bundle instead."
        )
        _logger.warning(text)
        warnings.warn(text, InsecureTLSWarning, stacklevel=_caller_stacklevel())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str | os.PathLike):
        context = _trusting(_path(verify, "verify"), "verify")
    else:
        raise InvalidInputError(
            "verify must be True, False, a CA bundle path or an ssl.SSLContext, "
            f"not {type(verify).__name__}."
        )
    if cert is not None:
        _load_cert(context, cert)
    return context
