"""Differential: the asyncio connection (llhttp) and h11 read the same generated answers alike.

Wherever both accept an answer, they must give the same status, headers and body. The
deliberate differences (each side refusing what the other takes) are listed in the design
doc; this test only checks that they never disagree about an answer both take.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookapi._http._h1 import H1Connection

from .test_h1 import FakeTransport

TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
VALUE = st.binary(max_size=20).map(lambda b: bytes(c for c in b if c not in b"\r\n"))
FRAMING = st.sampled_from(["length", "chunked", "close", "none"])


@dataclass(frozen=True)
class Read:
    """What one side made of an answer: None where it refused it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    status = draw(st.sampled_from([200, 201, 204, 304, 400, 404, 429, 500, 503, 599]))
    reason = draw(st.sampled_from([b"OK", b"", b"Some Reason", b"x\tz"]))
    interim = draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2))
    framing_names = (b"content-length", b"transfer-encoding", b"connection")
    headers = [(draw(TOKEN).encode(), draw(VALUE)) for _ in range(draw(st.integers(0, 4)))]
    headers = [(n, v) for n, v in headers if n.lower() not in framing_names]
    body = draw(st.binary(max_size=64))
    framing = draw(FRAMING)
    if status in (204, 304):
        body = b""
    if framing == "length":
        headers.append((b"Content-Length", b"%d" % len(body)))
        payload = body
    elif framing == "chunked" and version == b"1.1":
        headers.append((b"Transfer-Encoding", b"chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        payload = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
    elif framing == "close":
        headers.append((b"Connection", b"close"))
        payload = body
    else:
        payload = body
    raw = b"".join(b"HTTP/1.1 %d Continue\r\n\r\n" % code for code in interim)
    raw += b"HTTP/%b %d %b\r\n" % (version, status, reason)
    raw += b"".join(b"%b: %b\r\n" % pair for pair in headers)
    raw += b"\r\n" + payload
    mutation = draw(st.sampled_from(["none", "none", "insert", "delete", "replace"]))
    if mutation != "none" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        if mutation == "insert":
            raw = raw[:at] + byte + raw[at:]
        elif mutation == "delete":
            raw = raw[:at] + raw[at + 1 :]
        else:
            raw = raw[:at] + byte + raw[at + 1 :]
    splits = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    return raw, splits


def _pieces(raw: bytes, splits: list[int]) -> list[bytes]:
    return [raw[a:b] for a, b in zip([0, *splits], [*splits, len(raw)], strict=True)]


def read_with_ours(raw: bytes, splits: list[int]) -> Read | None:
    async def run() -> Read | None:
        connection = H1Connection((b"http", b"h.test", 80), asyncio.get_running_loop())
        connection.connection_made(FakeTransport())
        sending = asyncio.ensure_future(
            connection.request(httpx.Request("GET", "http://h.test/"), lambda _: None)
        )
        await asyncio.sleep(0)
        for piece in _pieces(raw, splits):
            if piece:
                connection.data_received(piece)
        connection.eof_received()
        try:
            response = await sending
            body = await response.aread()
        except httpx.RemoteProtocolError:
            return None
        return Read(status=response.status_code, headers=response.headers.raw, body=body)

    return asyncio.run(run())


def read_with_h11(raw: bytes, splits: list[int]) -> Read | None:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("Host", "h.test")]))
    connection.send(h11.EndOfMessage())
    for piece in _pieces(raw, splits):
        if piece:
            connection.receive_data(piece)
    connection.receive_data(b"")
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    body = b""
    try:
        while True:
            event = connection.next_event()
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status, headers = event.status_code, list(event.headers.raw_items())
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return Read(status=status, headers=headers, body=body)
            else:  # NEED_DATA after EOF, or a closed connection: the answer is incomplete
                return None
    except h11.RemoteProtocolError:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_both_parsers_agree_on_every_answer_both_accept(answer: tuple[bytes, list[int]]) -> None:
    raw, splits = answer
    ours = read_with_ours(raw, splits)
    theirs = read_with_h11(raw, splits)
    if ours is None or theirs is None:
        return
    assert ours.status == theirs.status
    assert [(n.lower(), v) for n, v in ours.headers] == [(n.lower(), v) for n, v in theirs.headers]
    assert ours.body == theirs.body


def test_the_generator_makes_answers_both_accept() -> None:
    """A guard against a vacuous test: well-formed answers are read alike, not refused."""
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: b \r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    )
    ours, theirs = read_with_ours(raw, [5, 40]), read_with_h11(raw, [5, 40])
    assert ours is not None
    assert ours == theirs
    assert ours.body == b"ok"
