"""``hookapi send`` over TLS: a network's own CA and a client certificate, from the options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio.from_thread
import pytest

from hookapi.cli import main
from hookapi.cli._common import ExitCode

from ..http.test_proxy import Proxy, proxy
from ..http.test_stack import SECRET
from ..http.test_tls import Pki, TLSServer, pki, serving_tls
from .conftest import Ran

__all__ = ["pki", "proxy"]  # the fixtures, imported to be used here


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run ``main(argv)`` with its own connections (not an emulator's in-process transport)."""

    def run(*argv: str) -> Ran:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Ran(int(code), captured.out, captured.err)

    return run


@pytest.fixture
def server(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[TLSServer]:
    """A TLS server that requires a client certificate, on a loop in another thread."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serving_tls(pki, require_client_cert=True)) as tls,
    ):
        monkeypatch.setenv("HOOKAPI_URL", f"{tls.url}/hook-1/{SECRET}")
        yield tls


def test_cacert_and_cert_reach_a_server_that_requires_them(
    cli: Callable[..., Ran], server: TLSServer, pki: Pki
) -> None:
    refused = cli("send", "--max-attempts", "1", "no CA given")
    assert refused.code == ExitCode.CONNECTION
    assert "CERTIFICATE_VERIFY_FAILED" in refused.err
    ran = cli("send", "--cacert", str(pki.bundle), "--cert", str(pki.client_pem), "trusted")
    assert ran.code == ExitCode.OK, ran.err
    ran = cli(
        "send",
        "--cacert",
        str(pki.bundle),
        "--cert",
        str(pki.client_cert),
        "--cert-key",
        str(pki.client_key),
        "again",
    )
    assert ran.code == ExitCode.OK, ran.err
    assert len(server.heads) == 2
    assert SECRET not in refused.err + ran.err + ran.out


def test_bad_tls_options_are_refused_before_sending(
    cli: Callable[..., Ran], server: TLSServer, pki: Pki, tmp_path: Path
) -> None:
    ran = cli("send", "--cert-key", str(pki.client_key), "hi")
    assert (ran.code, ran.err) == (
        ExitCode.USAGE,
        "hookapi send: error: --cert-key needs --cert.\n",
    )
    ran = cli("send", "--cacert", str(tmp_path / "missing.pem"), "hi")
    assert ran.code == ExitCode.INVALID_INPUT
    assert "is not a file or a directory" in ran.err
    assert server.heads == []


def test_the_tls_options_hold_through_the_environments_proxy(
    cli: Callable[..., Ran],
    server: TLSServer,
    pki: Pki,
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    before = len(proxy.forwarded())
    ran = cli("send", "--cacert", str(pki.bundle), "--cert", str(pki.client_pem), "tunnelled")
    assert ran.code == ExitCode.OK, ran.err
    lines = proxy.wait_for(before + 1)[before:]
    assert len(lines) == 1
    assert f" - CONNECT {server.url.removeprefix('https://')} - " in lines[0]
    assert SECRET not in lines[0]  # inside the tunnel, the path is the server's to read
    assert len(server.heads) == 1
