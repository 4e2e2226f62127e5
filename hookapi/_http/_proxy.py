"""Which proxy a hook's requests go through: an explicit one, or the environment's, as httpx does.

The tunnel itself (``CONNECT`` for https, absolute-form requests for http) is httpx's and
httpcore's: a proxied client hands its requests to ``httpx.AsyncHTTPTransport(proxy=...)``.
"""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    import ssl

__all__ = ["environment_proxy", "proxy_transport"]


def environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url``, or None (unset, or ``NO_PROXY`` matches).

    ``HTTPS_PROXY`` / ``HTTP_PROXY`` by the URL's scheme, then ``ALL_PROXY``; upper or lower
    case; ``NO_PROXY`` as a list of host names, domain suffixes and ``*`` (the standard
    library's reading, which is also what httpx's ``trust_env`` follows).
    """
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = url.host
    if url.port is not None:
        host = f"{host}:{url.port}"
    if urllib.request.proxy_bypass(host):
        return None
    return proxy


def proxy_transport(
    proxy: httpx.URL, *, ssl_context: ssl.SSLContext | None, max_connections: int
) -> httpx.AsyncHTTPTransport:
    """Httpx's transport through ``proxy``: it tunnels https and forwards http."""
    return httpx.AsyncHTTPTransport(
        proxy=httpx.Proxy(proxy),
        verify=ssl_context if ssl_context is not None else True,
        limits=httpx.Limits(max_connections=max_connections),
        trust_env=False,
    )
