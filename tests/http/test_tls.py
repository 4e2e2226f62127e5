"""TLS as users need it: their own CA, no verification (loudly), client certificates.

A local TLS server with its own CA (trustme) over real loopback sockets, on asyncio (hookapi's
own connections) and trio (httpcore's), through every way of building a client.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSListener, TLSStream
from cryptography.hazmat.primitives import serialization

from hookapi import (
    APIConnectionError,
    AsyncHookClient,
    ConnectionPool,
    HookClient,
    InsecureTLSWarning,
    InvalidInputError,
    RetryPolicy,
)

from .test_stack import SECRET, Server

pytestmark = pytest.mark.anyio

HOOK = "hook-1"
NO_RETRY = RetryPolicy.disabled()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Real sockets need real time."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_tls_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("ALL_PROXY", raising=False)
        monkeypatch.delenv("all_proxy", raising=False)


@dataclass
class Pki:
    """A private CA, its bundle on disk, and a client certificate it issued."""

    ca: trustme.CA
    bundle: Path
    client_pem: Path  # certificate and key in one file
    client_cert: Path
    client_key: Path
    folder: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA(organization_name="Corporate inspection CA")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("bot@client.test")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client-cert.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client-key.pem"))
    return Pki(
        ca=ca,
        bundle=tmp_path / "ca.pem",
        client_pem=tmp_path / "client.pem",
        client_cert=tmp_path / "client-cert.pem",
        client_key=tmp_path / "client-key.pem",
        folder=tmp_path,
    )


@dataclass
class TLSServer(Server):
    """The stack tests' server behind TLS; records the client certificates presented."""

    peers: list[object] = field(default_factory=list)


@asynccontextmanager
async def serving_tls(pki: Pki, *, require_client_cert: bool = False) -> AsyncIterator[TLSServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert("127.0.0.1").configure_cert(context)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        pki.ca.configure_trust(context)
    server = TLSServer()
    listener = TLSListener(await anyio.create_tcp_listener(local_host="127.0.0.1"), context)
    server.url = f"https://127.0.0.1:{listener.listener.extra(SocketAttribute.local_port)}"

    async def handle(stream: TLSStream) -> None:
        server.peers.append(stream.extra(TLSAttribute.peer_certificate))
        with contextlib.suppress(ssl.SSLError, anyio.BrokenResourceError, OSError):
            await server.handle(stream)

    async def serve() -> None:
        # A handshake the client refuses ends in an error for that connection only.
        while True:
            with contextlib.suppress(ssl.SSLError, anyio.BrokenResourceError, OSError):
                await listener.serve(handle)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(serve)
        yield server
        tg.cancel_scope.cancel()


def _client(server: TLSServer, **options: Any) -> AsyncHookClient:
    return AsyncHookClient(
        hook_id=HOOK, secret=SECRET, base_url=server.url, retry=NO_RETRY, **options
    )


def _path_of(client: AsyncHookClient) -> str:
    pool = client._transport._inner
    assert isinstance(pool, ConnectionPool)
    return "hookapi" if pool._asyncio else "httpcore"


async def test_an_unknown_ca_is_refused_by_default(pki: Pki, anyio_backend: str) -> None:
    async with serving_tls(pki) as server:
        async with _client(server) as client:
            with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
                await client.post_message("to a server nobody vouches for")
            assert _path_of(client) == ("hookapi" if anyio_backend == "asyncio" else "httpcore")
        assert SECRET not in str(caught.value)
        assert server.heads == []


@pytest.mark.parametrize("how", ["path", "pathlib", "context"])
async def test_verify_trusts_a_ca_bundle_or_a_context(pki: Pki, how: str) -> None:
    verify: object
    if how == "context":
        verify = ssl.create_default_context()
        pki.ca.configure_trust(verify)
    else:
        verify = pki.bundle if how == "pathlib" else str(pki.bundle)
    async with serving_tls(pki) as server, _client(server, verify=verify) as client:
        await client.post_message("through the corporate CA")
        await client.post_message("again, on the same connection")
    assert len(server.heads) == 2
    assert server.connections == 1


async def test_ssl_cert_file_is_honoured_with_trust_env(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.bundle))
    async with serving_tls(pki) as server:
        async with _client(server) as client:
            await client.post_message("trusted through the environment")
        async with _client(server, trust_env=False) as client:
            with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post_message("the environment ignored")
    assert len(server.heads) == 1


async def test_ssl_cert_dir_is_honoured_with_trust_env(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A CA directory names each certificate by its subject hash, as `openssl rehash` does.
    folder = tmp_path / "certs"
    folder.mkdir()
    subject_hash = _subject_hash(pki.bundle)
    (folder / f"{subject_hash}.0").write_bytes(pki.bundle.read_bytes())
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))
    async with serving_tls(pki) as server:
        async with _client(server) as client:
            await client.post_message("trusted through a CA directory")
        async with _client(server, verify=folder, trust_env=False) as client:
            await client.post_message("the same directory, given")
    assert len(server.heads) == 2


def _subject_hash(bundle: Path) -> str:
    import subprocess  # noqa: PLC0415

    out = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(bundle)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def test_verify_false_warns_loudly_and_connects(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving_tls(pki) as server:
        with (
            caplog.at_level(logging.WARNING, logger="hookapi"),
            pytest.warns(InsecureTLSWarning, match="verification is off") as warned,
        ):
            client = _client(server, verify=False)
        async with client:
            await client.post_message("unverified")
    assert warned[0].filename == __file__  # it points at the caller's line, not at hookapi
    (record,) = [r for r in caplog.records if r.name == "hookapi"]
    assert record.levelno == logging.WARNING
    assert "verify=False" in record.getMessage()
    assert len(server.heads) == 1


@pytest.mark.parametrize("form", ["one file", "pair"])
async def test_a_client_certificate_is_presented(pki: Pki, form: str) -> None:
    cert: object = pki.client_pem if form == "one file" else (pki.client_cert, pki.client_key)
    async with serving_tls(pki, require_client_cert=True) as server:
        async with _client(server, verify=pki.bundle) as client:
            with pytest.raises(APIConnectionError):
                await client.post_message("no certificate")
        async with _client(server, verify=pki.bundle, cert=cert) as client:
            await client.post_message("with the bot's certificate")
    assert len(server.heads) == 1
    presented = [peer for peer in server.peers if peer]
    assert len(presented) == 1
    assert "bot@client.test" in str(presented[0])


async def test_from_url_and_a_shared_pool_take_the_same_settings(pki: Pki) -> None:
    async with serving_tls(pki, require_client_cert=True) as server:
        url = f"{server.url}/{HOOK}/{SECRET}"
        async with AsyncHookClient.from_url(url, verify=pki.bundle, cert=pki.client_pem) as c:
            await c.post_message("from the URL")
        async with ConnectionPool(verify=str(pki.bundle), cert=pki.client_pem) as pool:
            for hook in ("hook-a", "hook-b"):
                client = AsyncHookClient(
                    hook_id=hook, secret=SECRET, base_url=server.url, transport=pool
                )
                async with client:
                    await client.post_message("through the shared pool")
    assert len(server.heads) == 3


async def test_the_sync_client_takes_the_same_settings(pki: Pki) -> None:
    async with serving_tls(pki, require_client_cert=True) as server:
        url = f"{server.url}/{HOOK}/{SECRET}"

        def post() -> int:
            with HookClient.from_url(url, verify=pki.bundle, cert=pki.client_pem) as client:
                return client.post_message("from a script").status_code

        assert await anyio.to_thread.run_sync(post) == 200
    assert len(server.heads) == 1


# Bad settings: refused when the client is built, before any request.


@pytest.fixture
def encrypted_key(pki: Pki) -> Path:
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2-passphrase"),
    )
    path = pki.folder / "encrypted-key.pem"
    path.write_bytes(pem)
    return path


def _refusal(**options: Any) -> str:
    with pytest.raises(InvalidInputError) as caught:
        AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url="https://h.test", **options)
    text = str(caught.value)
    assert SECRET not in text
    assert "message was not sent" not in text  # a bad option concerns no message
    return text


def test_bad_tls_settings_are_refused_with_what_was_wrong(
    pki: Pki, encrypted_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = pki.folder / "missing.pem"
    assert "verify must be True, False, a CA bundle path or an ssl.SSLContext, not int" in (
        _refusal(verify=1)
    )
    assert f"verify {str(missing)!r} is not a file or a directory" in _refusal(verify=missing)
    assert "holds no usable CA certificate" in _refusal(verify=pki.client_key)
    assert "verify must be a non-empty str path" in _refusal(verify="")
    assert "cannot be read" in _refusal(cert=missing)
    assert "is not a PEM certificate with its private key" in _refusal(cert=pki.client_cert)
    text = _refusal(cert=(pki.client_cert, encrypted_key))
    assert "is encrypted: load it into an ssl.SSLContext" in text
    assert "hunter2" not in text
    assert "a (certificate, key) pair" in _refusal(cert=(pki.client_cert,))
    assert "not both" in _refusal(verify=ssl.create_default_context(), cert=pki.client_pem)
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    assert "verify/cert or transport" in _refusal(transport=mock, verify=pki.bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    assert f"SSL_CERT_FILE {str(missing)!r} is not a file" in _refusal()
    with pytest.raises(InvalidInputError, match="verify 'nope' is not a file") as caught:
        ConnectionPool(verify="nope")
    assert "message" not in str(caught.value)


def test_an_http_hook_builds_no_context_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # A missing SSL_CERT_FILE does not matter to a plain-http hook (the emulator, say).
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url="http://127.0.0.1:1")
    with pytest.warns(InsecureTLSWarning):
        AsyncHookClient(hook_id=HOOK, secret=SECRET, base_url="http://127.0.0.1:1", verify=False)
