"""Every failure becomes a typed error that says what happened and whether it was delivered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from hookapi import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Delivery,
    HookAPIError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
)

from .conftest import HOOK_ID, ClientFactory, rate_headers

pytestmark = pytest.mark.anyio

NO_RETRY = RetryPolicy.disabled()


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, ServiceUnavailableError),
        (502, ServerError),
        (599, ServerError),
        (405, APIStatusError),
        (418, APIStatusError),
    ],
)
async def test_status_maps_to_its_class(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, status: int, cls: type
) -> None:
    router.post(message_url).respond(status, text="nope", headers=rate_headers(3))
    async with make_client(retry=NO_RETRY) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.post_message("hi")
    error = caught.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.attempts == 1
    assert error.url == f"https://hooks.example.test/v1/{HOOK_ID}/***/message"
    assert error.rate_limit is not None
    assert error.rate_limit.remaining == 3
    assert f"answered {status}" in str(error)
    assert "(1 attempt)" in str(error)
    assert error.body == "nope"


async def test_documented_401_body_is_parsed(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    body = {
        "error": "access_denied",
        "error_description": "The hook id or secret is wrong.",
        "message": "Access denied",
    }
    router.post(message_url).respond(401, json=body)
    async with make_client() as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.post_message("hi")
    error = caught.value
    assert (error.error, error.error_description, error.error_message) == (
        "access_denied",
        "The hook id or secret is wrong.",
        "Access denied",
    )
    assert error.delivery is Delivery.REJECTED
    assert "401 Unauthorized: The hook id or secret is wrong." in str(error)
    assert "The message was not posted." in str(error)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"error": 5}',
        b"\xff\xfe garbage",
        b"",
        b"<html>maintenance</html>",
    ],
)
async def test_malformed_error_bodies_still_give_the_typed_error(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, body: bytes
) -> None:
    router.post(message_url).respond(403, content=body)
    async with make_client() as client:
        with pytest.raises(PermissionDeniedError) as caught:
            await client.post_message("hi")
    assert caught.value.error is None
    assert caught.value.status_code == 403


async def test_error_bodies_are_read_only_up_to_a_bound(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    sent: list[int] = []

    async def huge() -> httpx.AsyncByteStream:
        class Stream(httpx.AsyncByteStream):
            async def __aiter__(self):  # type: ignore[no-untyped-def]
                for _ in range(1000):
                    sent.append(1)
                    yield b"x" * 4096

        return Stream()

    router.post(message_url).mock(return_value=httpx.Response(400, stream=await huge()))
    async with make_client() as client:
        with pytest.raises(BadRequestError) as caught:
            await client.post_message("hi")
    assert len(sent) <= 17  # 64 KiB in 4 KiB chunks, then it stops reading
    assert len(caught.value.body) <= 800
    assert len(str(caught.value)) < 500


async def test_json_error_message_field_is_used_when_no_description(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    router.post(message_url).respond(400, content=json.dumps({"message": "message is required"}))
    async with make_client() as client:
        with pytest.raises(BadRequestError, match="message is required"):
            await client.post_message("hi")


@pytest.mark.parametrize(
    ("exc", "cls", "delivery"),
    [
        (httpx.ConnectError("refused"), APIConnectionError, Delivery.NOT_SENT),
        (httpx.ConnectTimeout("slow"), APITimeoutError, Delivery.NOT_SENT),
        (httpx.PoolTimeout("busy"), APITimeoutError, Delivery.NOT_SENT),
        (httpx.UnsupportedProtocol("odd"), APIConnectionError, Delivery.NOT_SENT),
        (httpx.ReadTimeout("late"), APITimeoutError, Delivery.UNKNOWN),
        (httpx.WriteTimeout("stuck"), APITimeoutError, Delivery.UNKNOWN),
        (httpx.ReadError("reset"), APIConnectionError, Delivery.UNKNOWN),
        (httpx.RemoteProtocolError("dropped"), APIConnectionError, Delivery.UNKNOWN),
    ],
)
async def test_transport_failures_are_classified(
    make_client: ClientFactory, exc: Exception, cls: type, delivery: Delivery
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    async with make_client(retry=NO_RETRY, transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.post_message("hi")
    assert type(caught.value) is cls
    assert caught.value.delivery is delivery
    cause = caught.value.__cause__
    # A copy that keeps the story and none of the frames (their locals held the real URL).
    assert type(cause) is type(exc)
    assert cause is not exc
    assert str(cause) == str(exc)
    assert cause.__traceback__ is None
    assert delivery.describe() in str(caught.value)


async def test_a_broken_success_body_is_still_success(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b"o"
            raise httpx.ReadError("gone")

    router.post(message_url).mock(return_value=httpx.Response(200, stream=Broken()))
    async with make_client() as client:
        result = await client.post_message("hi")
    assert result.status_code == 200


async def test_a_broken_error_body_still_gives_the_status_error(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    class Broken(httpx.AsyncByteStream):
        def chunks(self) -> list[bytes]:
            raise httpx.ReadError("gone")

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in self.chunks():
                yield chunk  # pragma: no cover

    router.post(message_url).mock(return_value=httpx.Response(404, stream=Broken()))
    async with make_client() as client:
        with pytest.raises(NotFoundError):
            await client.post_message("hi")


def test_every_error_is_a_hookapi_error() -> None:
    for cls in (APIConnectionError, APITimeoutError, RateLimitError, ServiceUnavailableError):
        assert issubclass(cls, HookAPIError)
    error = HookAPIError("Plain.")
    assert str(error) == "Plain. The message was not sent."
    assert error.message == "Plain."


async def test_a_cause_that_mentions_the_secret_is_chained_redacted(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, secret: str
) -> None:
    # respx chains its own error, whose repr names the route (and so the secret).
    router.post(message_url).mock(side_effect=httpx.ConnectError("refused"))
    async with make_client(retry=NO_RETRY) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.post_message("hi")
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert str(cause) == "refused"
    link: BaseException | None = cause
    while link is not None:
        assert secret not in str(link) + repr(link.args)
        assert link.__traceback__ is None
        link = link.__cause__ or link.__context__
    assert caught.value.__suppress_context__
