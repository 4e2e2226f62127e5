"""Proxies, as httpx honours them: explicit or from the environment, through a real proxy.

The proxy is proxy.py, run as a subprocess on a loopback port; its access log records what it
forwarded (an absolute-form request for http, a CONNECT tunnel for https).
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import trustme
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener, TLSStream

from hookapi import APIConnectionError, AsyncHookClient, Delivery, InvalidInputError, RetryPolicy
from hookapi._http import environment_proxy

from .test_stack import SECRET, Server, serving

pytestmark = pytest.mark.anyio

HOOK = "hook-1"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Real sockets need real time."""
    return str(request.param)


@dataclass
class Proxy:
    """proxy.py serving on loopback, and its log."""

    url: str
    log: Path

    def forwarded(self) -> list[str]:
        """The access-log lines: one per request or tunnel it carried."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.split("access_log:", 1)[1] for line in lines if "access_log:" in line]

    def wait_for(self, count: int) -> list[str]:
        # The proxy writes its log line when the exchange ends, in another process.
        for _ in range(200):
            lines = self.forwarded()
            if len(lines) >= count:
                return lines
            time.sleep(0.01)
        return self.forwarded()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    where = tmp_path_factory.mktemp("proxy")
    port_file, log = where / "port", where / "access.log"
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"]
    command += ["--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1"]
    command += ["--log-file", str(log), "--log-level", "INFO"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):  # it writes the port once it listens
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.01)
        else:  # pragma: no cover
            pytest.fail("proxy.py did not start")
        yield Proxy(url=f"http://127.0.0.1:{port_file.read_text().strip()}", log=log)
    finally:
        process.terminate()
        process.wait(10)


def _hook_path() -> str:
    return f"/{HOOK}/{SECRET}/message"


async def test_an_explicit_proxy_forwards_http_in_absolute_form(proxy: Proxy) -> None:
    before = len(proxy.forwarded())
    async with serving() as server:
        client = AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url, proxy=proxy.url)
        async with client:
            await client.post_message("through the proxy")
    lines = proxy.wait_for(before + 1)[before:]
    host = server.url.removeprefix("http://")
    assert len(lines) == 1
    assert f" - POST {host}{_hook_path()} - 200 OK" in lines[0]  # what it forwarded
    assert len(server.heads) == 1
    assert server.heads[0].startswith(f"POST {_hook_path()} HTTP/1.1".encode())


@pytest.mark.parametrize(
    ("env", "through"),
    [
        ({"HTTP_PROXY": "{proxy}"}, True),
        ({"http_proxy": "{proxy}"}, True),
        ({"ALL_PROXY": "{proxy}"}, True),
        ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"}, False),
        ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "*"}, False),
        ({"HTTPS_PROXY": "{proxy}"}, False),  # the hook is plain http
    ],
)
async def test_the_environment_names_the_proxy(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], through: bool
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(proxy=proxy.url))
    before = len(proxy.forwarded())
    async with serving() as server:
        async with AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url) as client:
            await client.post_message("hi")
        # trust_env=False ignores the environment altogether.
        client = AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url, trust_env=False)
        async with client:
            await client.post_message("direct")
    lines = proxy.wait_for(before + 1)[before:] if through else proxy.forwarded()[before:]
    assert len(lines) == (1 if through else 0)
    assert len(server.heads) == 2


@asynccontextmanager
async def serving_tls(ca: trustme.CA) -> AsyncIterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = Server()
    listener = TLSListener(await anyio.create_tcp_listener(local_host="127.0.0.1"), context)
    port = listener.listener.extra(SocketAttribute.local_port)
    server.url = f"https://127.0.0.1:{port}"

    async def handle(stream: TLSStream) -> None:
        with contextlib.suppress(ssl.SSLError, anyio.BrokenResourceError, OSError):
            await server.handle(stream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield server
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("trust", ["SSL_CERT_FILE", "verify"])
async def test_https_goes_through_a_connect_tunnel(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trust: str
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    if trust == "SSL_CERT_FILE":
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    verify = tmp_path / "ca.pem" if trust == "verify" else True
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    before = len(proxy.forwarded())
    async with serving_tls(ca) as server:
        client = AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url=server.url, verify=verify)
        async with client:
            await client.post_message("tunnelled")
    lines = proxy.wait_for(before + 1)[before:]
    assert len(lines) == 1
    assert f" - CONNECT {server.url.removeprefix('https://')} - " in lines[0]
    assert SECRET not in lines[0]  # the tunnel hides the path from the proxy
    assert server.heads[0].startswith(f"POST {_hook_path()} HTTP/1.1".encode())


async def test_the_proxys_own_errors_never_show_the_secret(proxy: Proxy) -> None:
    async with serving() as server:
        closed = server.url
    retry = RetryPolicy.disabled()
    for base in (closed, closed.replace("http:", "https:")):  # forwarded, then tunnelled
        client = AsyncHookClient(
            hook_id=HOOK, secret=SECRET, base_url=base, proxy=proxy.url, retry=retry
        )
        async with client:
            with pytest.raises(Exception) as caught:
                await client.post_message("to a dead upstream")
        error = caught.value
        texts = [str(error), repr(error), repr(error.args), str(vars(error))]
        cause: BaseException | None = error
        while cause is not None:
            texts.append(repr(cause))
            cause = cause.__cause__ or cause.__context__
        assert not any(SECRET in text for text in texts)
        if isinstance(error, APIConnectionError):
            assert error.delivery is Delivery.NOT_SENT  # the tunnel never opened
        else:
            assert getattr(error, "status_code", None) == 502  # the proxy's answer


def test_proxy_options_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        AsyncHookClient(
            hook_id=HOOK,
            secret=SECRET,
            base_url="https://h.test",
            proxy="http://proxy.test:3128",
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        )
    for bad in ("socks5://proxy.test", "http://user:pw@", 42):
        with pytest.raises(InvalidInputError) as caught:
            AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url="https://h.test", proxy=bad)  # type: ignore[arg-type]
        assert "pw" not in str(caught.value)


def test_environment_proxy_follows_scheme_all_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    url = httpx.URL("https://hooks.example.com/v1")
    assert environment_proxy(url) is None
    monkeypatch.setenv("ALL_PROXY", "http://all.test:1")
    assert environment_proxy(url) == "http://all.test:1"
    monkeypatch.setenv("HTTPS_PROXY", "http://secure.test:2")
    assert environment_proxy(url) == "http://secure.test:2"
    monkeypatch.setenv("NO_PROXY", "example.com")
    assert environment_proxy(url) is None
    assert environment_proxy(httpx.URL("https://other.test:8443/")) == "http://secure.test:2"
    assert json.dumps(environment_proxy(httpx.URL("http://other.test/"))) == '"http://all.test:1"'
