"""The async client: options, lifecycle, and :meth:`AsyncHookClient.post_message`.

The client builds each request with ``***`` in place of the secret and hands it straight to
its transport stack (no ``httpx.AsyncClient``: this API needs no cookies, redirects or auth
flows, and skipping them keeps the per-message cost close to the bare transport's).
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack

import anyio
import httpx

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    Delivery,
    HookAPIError,
    InvalidInputError,
    RateLimitError,
    WrongEventLoopError,
    builds,
    status_error_class,
)
from ._frozen import new, slot_setters
from ._http import (
    ATTEMPT_EXTENSION,
    DEADLINE_EXTENSION,
    FIELDS_EXTENSION,
    QUOTA_WAIT_EXTENSION,
    RATE_LIMIT_EXTENSION,
    SENDING_EXTENSION,
    RateLimitTransport,
    current_loop,
    delivery_of,
    environment_proxy,
    loop_mismatch,
    proxy_transport,
    sanitized_chain,
    tls_context,
)
from ._otel import Attempts, Instrumentation, check_providers, instrumentation
from ._quota import (
    HookKey,
    QuotaStore,
    QuotaWaitTooLong,
    RateLimit,
    default_store,
    parse_retry_after,
)
from ._retry import RetryPolicy, call_with_retries
from ._secrets import PLACEHOLDER, Secret, redact
from ._validate import (
    check_base_url,
    check_hook_id,
    check_proxy,
    check_timeout,
    encode_message,
    split_hook_url,
)
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._http import CertTypes, VerifyTypes

__all__ = ["AsyncHookClient", "ClientOptions", "PostResult"]

ENV_VAR = "HOOKAPI_URL"
#: Error bodies are read up to this many bytes; the rest is discarded.
MAX_ERROR_BODY = 64 * 1024
_SNIPPET = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class PostResult:
    """What a successful :meth:`AsyncHookClient.post_message` learned.

    Attributes:
        status_code: The success status (the service answers 200).
        attempts: Requests sent, 1 when the first one succeeded (a request that never left,
            such as one refused by the client's own pacing, does not count).
        rate_limit: The rate-limit headers of the successful answer, if it had any.
        elapsed: Seconds the call took, throttle waits and retries included.
    """

    status_code: int
    attempts: int
    rate_limit: RateLimit | None
    elapsed: float


def _post_result(
    status_code: int, attempts: int, rate_limit: RateLimit | None, elapsed: float
) -> PostResult:
    """A :class:`PostResult`, built field by field (see ``hookapi._frozen``): once per call."""
    result = new(PostResult)
    _set_status_code(result, status_code)
    _set_attempts(result, attempts)
    _set_rate_limit(result, rate_limit)
    _set_elapsed(result, elapsed)
    return result


_set_status_code, _set_attempts, _set_rate_limit, _set_elapsed = slot_setters(
    PostResult, "status_code", "attempts", "rate_limit", "elapsed"
)


class ClientOptions(TypedDict, total=False):
    """The options every way of building a client takes, typed so that a misspelling is caught.

    :meth:`AsyncHookClient.from_url`, :meth:`AsyncHookClient.from_env` and the sync
    :class:`~hookapi.HookClient` take them as keywords (``**options: Unpack[ClientOptions]``);
    the constructor below documents each. A new constructor option is one line here.
    """

    timeout: float
    retry: RetryPolicy | None
    transport: httpx.AsyncBaseTransport | None
    allow_insecure_http: bool
    max_connections: int
    user_agent: str | None
    proxy: str | httpx.URL | None
    trust_env: bool
    verify: VerifyTypes
    cert: CertTypes | None
    quota: QuotaStore | None
    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None


class AsyncHookClient:
    """Posts chat messages through one hook, as its bot account.

    One client serves any number of concurrent tasks: they share one connection pool and one
    view of the hook's quota, so together they never start a request the quota would refuse.
    The quota is shared further: every client of the same hook (base URL and hook id) in a
    process uses one quota state and one first-come-first-served queue, automatically.

    Args:
        hook_id: The hook's id (shown in reprs and errors; it is not a credential).
        secret: The hook's secret (never shown anywhere).
        base_url: Where the service's hooks live; the request goes to
            ``{base_url}/{hook_id}/{secret}/message``.
        timeout: Seconds each attempt may take as a whole, connecting, sending and reading the
            answer included (the service's own examples use 10).
        retry: The :class:`RetryPolicy`; default ``RetryPolicy()``.
        transport: The inner ``httpx.AsyncBaseTransport`` doing the I/O (default: hookapi's
            keep-alive HTTP/1.1 pool, its own connections on asyncio and httpcore's on
            trio, closed with the client). An injected one (a :class:`ConnectionPool`
            shared by many clients, for one) belongs to its owner and is not closed.
        proxy: An ``http://`` or ``https://`` proxy to send through (a CONNECT tunnel for
            https); default: the environment's when ``trust_env``.
        trust_env: Honour ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``
            when neither ``proxy`` nor ``transport`` is given, and ``SSL_CERT_FILE`` /
            ``SSL_CERT_DIR`` when ``verify`` is True (as httpx does).
        verify: How the service's TLS certificate is verified: True (certifi's roots, or the
            environment's ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), a CA bundle path (a file, or
            a directory of hashed certificates: a network that inspects TLS with its own CA),
            an ``ssl.SSLContext`` used as it is, or False: no verification, which warns
            (:class:`~hookapi.InsecureTLSWarning` and a WARNING log), since whoever can read
            the traffic can read the secret.
        cert: A client certificate to present (a service or gateway that requires one): a
            PEM file with the certificate and its key, or a ``(certificate, key)`` pair of
            paths. An encrypted key: load it into an ``ssl.SSLContext`` and pass ``verify=``.
        allow_insecure_http: Allow plain ``http://`` to a host that is not loopback.
        max_connections: Connections the default transport may open.
        user_agent: Sent as ``User-Agent``; default ``hookapi/<version>``.
        quota: Where the hook's quota is kept (a :class:`~hookapi.QuotaStore`); default: the
            process's shared :class:`~hookapi.MemoryQuota`. Pass a shared store to pace
            several processes on one hook together.
        tracer_provider: Where the client's OpenTelemetry spans go (the ``otel`` extra);
            default: the global provider, if one is set by the client's first post.
        meter_provider: Where the client's OpenTelemetry metrics go; default: the global
            provider, if one is set by the client's first post. With neither, and no global
            one, the client reports nothing and costs nothing (:doc:`observability`).

    Example:
        >>> import anyio, hookapi
        >>> async def main() -> None:
        ...     async with hookapi.AsyncHookClient.from_env() as client:
        ...         result = await client.post_message("Deploy finished")
        ...         print(result.rate_limit)
    """

    _telemetry: Instrumentation | None = None
    _providers: tuple[TracerProvider | None, MeterProvider | None] | None

    @builds
    def __init__(  # noqa: PLR0915  (one check per option, each where the option is used)
        self,
        *,
        hook_id: str,
        secret: str | Secret,
        base_url: str | httpx.URL,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_insecure_http: bool = False,
        max_connections: int = 32,
        user_agent: str | None = None,
        proxy: str | httpx.URL | None = None,
        trust_env: bool = True,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        quota: QuotaStore | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._hook_id = check_hook_id(hook_id)
        try:
            self._secret = secret if isinstance(secret, Secret) else Secret(secret)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(str(exc)) from None
        self._base_url = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._timeout = check_timeout("timeout", timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidInputError(f"retry must be a RetryPolicy, not {type(retry).__name__}.")
        self._retry = retry or RetryPolicy()
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidInputError("max_connections must be an int.")
        if max_connections < 1:
            raise InvalidInputError(f"max_connections must be at least 1, not {max_connections}.")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise InvalidInputError(
                f"transport must be an httpx.AsyncBaseTransport, not {type(transport).__name__}."
            )
        if proxy is not None and transport is not None:
            raise InvalidInputError("Pass proxy or transport, not both: a transport has its own.")
        if transport is not None and (verify is not True or cert is not None):
            raise InvalidInputError(
                "Pass verify/cert or transport, not both: a transport has its own TLS settings "
                "(ConnectionPool(verify=..., cert=...))."
            )
        proxy_url = None if proxy is None else check_proxy(proxy)
        if quota is not None and not isinstance(quota, QuotaStore):
            raise InvalidInputError(f"quota must be a QuotaStore, not {type(quota).__name__}.")
        # The base path as given: "%2F", "%25" and "%3F" stay encoded.
        raw_base = self._base_url.raw_path.decode("ascii").rstrip("/")
        path = f"{raw_base}/{self._hook_id}/{{}}/message"
        self._url = self._base_url.copy_with(raw_path=path.format(PLACEHOLDER).encode("ascii"))
        self._url_text = str(self._url)
        self._what = f"POST {self._url_text}"  # how retry log records name the request
        own = transport is None
        if transport is None:
            # Imported here: httpcore pulls in trio when it is installed, a cost
            # `import hookapi` should not pay when the caller brings its own transport.
            from ._http import ConnectionPool  # noqa: PLC0415

            # Made here, outside any event loop: loading the CA roots is blocking file I/O.
            # Non-default settings are checked (and verify=False warns) even for http://.
            https = self._base_url.scheme == "https"
            context = (
                tls_context(verify=verify, cert=cert, trust_env=trust_env)
                if https or verify is not True or cert is not None
                else None
            )
            if proxy_url is None and trust_env:
                from_env = environment_proxy(self._base_url)
                proxy_url = None if from_env is None else check_proxy(from_env)
            if proxy_url is not None:
                transport = proxy_transport(
                    proxy_url, ssl_context=context, max_connections=max_connections
                )
            else:
                transport = ConnectionPool(
                    max_connections=max_connections,
                    verify=True if context is None else context,
                    trust_env=trust_env,
                )
        # A closure, not attributes: what it hides shows in no repr and no frame's locals.
        self._hide = _hider(self._secret, proxy_url)
        self._quota = quota if quota is not None else default_store()
        # What the client reports through is looked up at its first post, once.
        self._providers = check_providers(tracer_provider, meter_provider)
        # Every header but Content-Length, as raw pairs: building each request from them skips
        # httpx's header normalisation and body encoding, the largest cost on the hot path.
        agent: object = user_agent or f"hookapi/{__version__}"
        if not isinstance(agent, str) or not agent.isprintable() or not agent.isascii():
            raise InvalidInputError("user_agent must be printable ASCII text.")
        self._header_pairs, self._fields = _head(
            (b"Host", self._url.netloc),
            (b"Accept", b"*/*"),
            # Nothing compressed: an error body (from a proxy, say) must reach the error as JSON.
            (b"Accept-Encoding", b"identity"),
            (b"Content-Type", b"application/json"),
            (b"User-Agent", agent.encode("ascii")),
        )
        key = HookKey(base_url=str(self._base_url).rstrip("/"), hook_id=self._hook_id)
        self._transport = RateLimitTransport(
            transport,
            store=self._quota,
            key=key,
            real_url=self._base_url.copy_with(
                raw_path=path.format(self._secret.reveal()).encode("ascii")
            ),
            own_inner=own,
            fields=self._fields,
        )
        self._rate_limit: RateLimit | None = None
        self._closed = False
        self._loop: object | None = None  # the event loop of the first post

    @classmethod
    @builds
    def from_url(cls, url: str, **options: Unpack[ClientOptions]) -> Self:
        """Build a client from the full hook URL a user copied.

        Args:
            url: ``{base}/{hook_id}/{secret}``, with or without a trailing ``/message`` (and
                one trailing slash); nothing else may follow the secret.
            **options: The constructor's other options (:class:`ClientOptions`).

        Raises:
            InvalidInputError: The URL does not have that shape, or has a query, a fragment,
                a user name, or a percent-encoded id or secret (the error never shows it).
        """
        base, hook_id, secret = split_hook_url(url)
        return cls(hook_id=hook_id, secret=secret, base_url=base, **options)

    @classmethod
    @builds
    def from_env(cls, *, env_var: str = ENV_VAR, **options: Unpack[ClientOptions]) -> Self:
        """Build a client from the hook URL in the ``HOOKAPI_URL`` environment variable.

        When that variable is unset or empty, ``HOOKAPI_URL_FILE`` (``env_var`` and
        ``_FILE``) may name a file that holds the URL on its one non-blank line instead, so
        that the secret sits in neither the environment nor a command line.

        Args:
            env_var: The variable to read.
            **options: The constructor's other options (:class:`ClientOptions`).

        Raises:
            InvalidInputError: Neither variable is set, the file cannot be read, or the value
                is not a hook URL.
        """
        url = os.environ.get(env_var, "").strip()
        if not url:
            url = _url_from_file(env_var)
        return cls.from_url(url, **options)

    @property
    def hook_id(self) -> str:
        """The hook's id."""
        return self._hook_id

    @property
    def url(self) -> str:
        """The message URL with the secret shown as ``***``."""
        return self._url_text

    @property
    def rate_limit(self) -> RateLimit | None:
        """The latest rate-limit headers seen for this hook, or ``None``."""
        return self._rate_limit

    @property
    def quota(self) -> QuotaStore:
        """The store that keeps this hook's quota (shared with every client of the hook)."""
        return self._quota

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy this client applies."""
        return self._retry

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` has been called."""
        return self._closed

    def __repr__(self) -> str:
        base = str(self._base_url).rstrip("/")
        return f"<AsyncHookClient base_url={base!r} hook_id={self._hook_id!r}>"

    async def __aenter__(self) -> Self:
        if self._closed:
            error = ClientClosedError("This AsyncHookClient is closed and cannot be reopened.")
            error.concerns_message = False
            raise error
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client opened; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._transport.aclose()

    async def post_message(
        self,
        text: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (per-call timeouts are the contract)
        deadline: float | None = None,
    ) -> PostResult:
        """Post ``text`` to the hook's Desktop as the bot, throttled and retried.

        Calls wait for the hook's quota in the order they were made (first come, first
        served, across every client of the hook in the process). A burst larger than the
        quota does not wait by default: each call that cannot get a slot within its
        ``deadline`` (60 s by default) fails at once with :class:`RateLimitError`
        (``local=True``, ``retry_after`` set, nothing sent). To let a burst drain at the
        quota's pace instead, pass ``deadline=math.inf`` (here or in the
        :class:`RetryPolicy`): each call then waits as long as its turn takes. For bursts
        that should survive a restart, or that you do not want to hold tasks for, queue them
        in an outbox (:doc:`howto`).

        Args:
            text: The message; a non-empty ``str`` that encodes as UTF-8.
            timeout: Seconds each attempt may take as a whole, from its first byte to the
                last of the answer, however slowly they come (default: the client's
                ``timeout``). An answer whose ``200`` status arrived counts as posted, even if
                its body then stalls past the timeout.
            deadline: Seconds the whole call may take, throttle waits, attempts and backoff
                included (default: the retry policy's ``deadline``); ``math.inf`` waits as
                long as the quota needs.

        Returns:
            What the successful answer said.

        Raises:
            InvalidInputError: Bad input, refused before any request.
            ClientClosedError: The client is closed.
            APIStatusError: The service refused (a subclass per status), after any retries.
            RateLimitError: Over quota; ``local`` is True when the client refused itself
                because the quota could not come back before the deadline, or the deadline
                ended while the call waited for it (``retry_after``: the least wait known).
            APIConnectionError: No answer, after any retries; ``delivery`` says whether the
                message may nevertheless have been posted.
        """
        if self._closed:
            raise ClientClosedError("This AsyncHookClient is closed; create a new one.")
        if self._loop is None:
            self._loop = current_loop()
            self._telemetry = self._instrumentation()
        elif (mismatch := loop_mismatch("AsyncHookClient", self._loop)) is not None:
            raise WrongEventLoopError(mismatch)
        if self._telemetry is None:
            return await self._post(text, timeout, deadline, None)
        return await self._telemetry.post(
            lambda attempts: self._post(text, timeout, deadline, attempts)
        )

    def _instrumentation(self) -> Instrumentation | None:
        """The OpenTelemetry reporting of this client, looked up once (``None``: none)."""
        if self._providers is not None:
            tracer_provider, meter_provider = self._providers
            self._providers = None
            self._telemetry = instrumentation(
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                url=self._url,
                url_full=self._url_text,
                hook_id=self._hook_id,
                hide=self._hide,
            )
        return self._telemetry

    async def _post(
        self,
        text: str,
        timeout: float | None,  # noqa: ASYNC109  (post_message's, passed on)
        deadline: float | None,
        trace: Attempts | None,
    ) -> PostResult:
        body = encode_message(text)
        attempt_timeout = self._timeout if timeout is None else check_timeout("timeout", timeout)
        total = self._retry.deadline if deadline is None else check_timeout("deadline", deadline)
        # With nothing to report to, the request goes to the pool as bytes (no request or
        # response objects), through the same quota, signals and errors: the fast path.
        as_bytes = trace is None and self._transport.takes_bytes()
        fast = as_bytes or self._transport.bounds_every_wait()
        # On the fast path the loop is asyncio's, whose clock anyio.current_time() reads too:
        # read it directly, without asking which library runs, several times a message.
        loop: Any = self._loop
        clock: Callable[[], float] = loop.time if fast else anyio.current_time
        started = clock()
        deadline_at = started + total
        call = _Call(
            self,
            body,
            timeout=attempt_timeout,
            deadline_at=deadline_at,
            total=total,
            clock=clock,
            trace=trace,
        )
        if fast:
            # The fast path: the quota answers without awaiting and every wait of the
            # connection ends by the deadline, so no cancel scope is needed to keep it; an
            # attempt that reaches the deadline fails as the scope would have failed it.
            call.unscoped = True
            call.as_bytes = as_bytes
            status, rate_limit = await call_with_retries(
                self._retry, call.attempt, deadline_at=deadline_at, what=self._what
            )
            return _post_result(status, call.sent, rate_limit, clock() - started)
        with anyio.CancelScope(deadline=deadline_at) as scope:
            status, rate_limit = await call_with_retries(
                self._retry, call.attempt, deadline_at=deadline_at, what=self._what
            )
            return _post_result(status, call.sent, rate_limit, clock() - started)
        assert scope.cancelled_caught
        gate = call.extensions.get(QUOTA_WAIT_EXTENSION)
        if gate is not None:
            # The deadline ended while the call waited for the quota: nothing was in flight.
            error = self._local_refusal(gate.estimate(), waited=True)
            error.attempts = call.sent
            raise error
        timeout_error = self._deadline_error(call)
        timeout_error.attempts = call.sent + call.sending()
        raise timeout_error

    def _deadline_error(self, call: _Call) -> APITimeoutError:
        """The error of a call whose deadline ended while an attempt was under way."""
        return APITimeoutError(
            f"POST {self._url_text} did not finish within its {call.total:g} s deadline.",
            url=self._url_text,
            delivery=Delivery.UNKNOWN if call.sending() else Delivery.NOT_SENT,
        )

    async def _send(self, call: _Call, attempt: int) -> httpx.Response:
        remaining = call.deadline_at - call.clock()
        if remaining <= 0:
            raise APITimeoutError(
                f"POST {self._url_text} ran out of its deadline before attempt {attempt}.",
                url=self._url_text,
            )
        t = min(call.timeout, remaining)
        body = call.body
        request = httpx.Request(
            "POST",
            self._url,
            headers=[*self._header_pairs, (b"Content-Length", str(len(body)).encode("ascii"))],
            stream=httpx.ByteStream(body),
            extensions={
                "timeout": {"connect": t, "read": t, "write": t, "pool": t},
                ATTEMPT_EXTENSION: t,
                DEADLINE_EXTENSION: call.deadline_at,
                FIELDS_EXTENSION: self._fields,
            },
        )
        call.extensions = request.extensions
        if call.trace is not None:
            call.trace.start(request.extensions, call.sent)
        failure: httpx.TransportError | QuotaWaitTooLong
        try:
            response = await self._transport.handle_async_request(request)
        except (httpx.TransportError, QuotaWaitTooLong) as exc:
            failure = exc
        else:
            return await self._handle(response, call)
        # Raised outside the except block, so the original is not even the implicit context,
        # and dropped from this frame: its traceback reaches the frames that held the real
        # URL and the proxy's credentials. The cause is a copy with redacted texts, no frames.
        error, cause = self._error_of(failure, call)
        del failure
        if cause is None:
            raise error
        raise error from cause

    async def _send_bytes(self, call: _Call, attempt: int) -> tuple[int, RateLimit | None]:
        """:meth:`_send` on the fast path: the body to the pool as bytes, no httpx objects.

        A complete 2xx answer comes back as its status and rate limit; any other answer
        goes on through :meth:`_handle`, and every failure through :meth:`_error_of`.
        """
        remaining = call.deadline_at - call.clock()
        if remaining <= 0:
            raise APITimeoutError(
                f"POST {self._url_text} ran out of its deadline before attempt {attempt}.",
                url=self._url_text,
            )
        failure: httpx.TransportError | QuotaWaitTooLong
        try:
            answer = await self._transport.post(
                call.body,
                attempt=min(call.timeout, remaining),
                deadline=call.deadline_at,
                extensions=call.extensions,
            )
        except (httpx.TransportError, QuotaWaitTooLong) as exc:
            failure = exc
        else:
            if type(answer) is tuple:
                if answer[1] is not None:
                    self._rate_limit = answer[1]
                return answer
            assert isinstance(answer, httpx.Response)
            response = await self._handle(answer, call)
            return response.status_code, response.extensions.get(RATE_LIMIT_EXTENSION)
        # As in _send: raised outside the except block, the original dropped from this frame.
        error, cause = self._error_of(failure, call)
        del failure
        if cause is None:
            raise error
        raise error from cause

    def _error_of(
        self, failure: httpx.TransportError | QuotaWaitTooLong, call: _Call
    ) -> tuple[HookAPIError, BaseException | None]:
        """The error an attempt's failure raises, and its cause (a redacted copy, or None)."""
        if isinstance(failure, QuotaWaitTooLong):
            # Unscoped, a wait the deadline ended is told as the cancel scope would tell it.
            return self._local_refusal(failure.wait, waited=call.past_deadline()), None
        if isinstance(failure, httpx.TimeoutException) and call.past_deadline():
            return self._deadline_error(call), None
        return self._connection_error(failure), sanitized_chain(failure, self._hide)

    def _local_refusal(self, wait: float | None, *, waited: bool = False) -> RateLimitError:
        # The wait is the client's own count: the service names no reset time, so a fixed
        # window may restart sooner. Say "up to", once; the error's tail says it was not sent.
        if wait is not None and math.isinf(wait):
            why = "the service allows no requests at all (a quota of 0)"
        elif waited or wait is None:
            why = "its deadline ended while it waited for the hook's quota"
            if wait is not None:
                why += f" (up to {math.ceil(wait)} s more by the client's count)"
        else:
            why = (
                f"the hook's quota is used up for up to {math.ceil(wait)} s more by the "
                "client's count (the service does not say when its window restarts), past "
                "this call's deadline"
            )
        error = RateLimitError(
            f"POST {self._url_text} was held back by the client: {why}.",
            url=self._url_text,
            status_code=429,
            retry_after=None if wait is None or math.isinf(wait) else wait,
            delivery=Delivery.NOT_SENT,
        )
        error.local = True
        return error

    async def _handle(self, response: httpx.Response, call: _Call) -> httpx.Response:
        """Return a success (its body drained, so the connection is reused) or raise its error."""
        rate_limit = response.extensions.get(RATE_LIMIT_EXTENSION)
        if rate_limit is not None:
            self._rate_limit = rate_limit
        if 200 <= response.status_code < 300:
            stalled = False
            try:
                await _read_bounded(response)
            except httpx.TimeoutException:
                stalled = True  # the status said it was posted; a broken tail does not change that
            except httpx.TransportError:
                pass
            finally:
                await response.aclose()
            if stalled and call.past_deadline():
                # ... unless the tail ran into the deadline: the cancel scope ends such a call.
                raise self._deadline_error(call)
            return response
        raise await self._status_error(response, rate_limit)

    def _connection_error(self, exc: httpx.TransportError) -> APIConnectionError:
        delivery = delivery_of(exc)
        kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        detail = self._hide(str(exc)).rstrip(" .") or type(exc).__name__
        where = (
            "before it was sent" if delivery is Delivery.NOT_SENT else "after it may have been sent"
        )
        return kind(
            f"POST {self._url_text} failed {where}: {type(exc).__name__}: {detail}.",
            url=self._url_text,
            delivery=delivery,
        )

    async def _status_error(
        self, response: httpx.Response, rate_limit: RateLimit | None
    ) -> APIStatusError:
        try:
            raw = await _read_bounded(response)
        except httpx.TransportError:
            raw = b""
        finally:
            await response.aclose()
        secret = self._secret
        text = redact(raw.decode("utf-8", errors="replace"), secret)
        error = description = message = None
        try:
            data = json.loads(text) if text.lstrip().startswith("{") else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            # Decoded again: JSON escapes can spell the secret in ways the raw text did not.
            error, description, message = (
                redact(v, secret) if isinstance(v, str) else None
                for v in (data.get("error"), data.get("error_description"), data.get("message"))
            )
        status = response.status_code
        detail = description or message or error or " ".join(text.split())[:_SNIPPET]
        detail = detail.rstrip(" .")
        phrase = httpx.codes.get_reason_phrase(status)
        summary = f"POST {self._url_text} answered {status} {phrase}".rstrip()
        # Kept for the caller (where a redirect points, what a 401 asks for), redacted: a
        # redirect's Location is the request URL, secret and all, as often as not.
        location, authenticate = (
            None if value is None else redact(value, secret)
            for value in (
                response.headers.get("location"),
                response.headers.get("www-authenticate"),
            )
        )
        if location is not None and 300 <= status < 400:
            summary += f" (redirected to {location}, which is not followed)"
        cls = status_error_class(status)
        return cls(
            f"{summary}: {detail}." if detail else f"{summary}.",
            url=self._url_text,
            status_code=status,
            error=error,
            error_description=description,
            error_message=message,
            body=text[: 4 * _SNIPPET],
            location=location,
            www_authenticate=authenticate,
            rate_limit=rate_limit,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            delivery=Delivery.UNKNOWN if status in (502, 504) else Delivery.REJECTED,
        )


class _Call:
    """The state of one post_message call, shared by its attempts."""

    __slots__ = (
        "as_bytes",
        "attempts",
        "body",
        "client",
        "clock",
        "deadline_at",
        "extensions",
        "sent",
        "timeout",
        "total",
        "trace",
        "unscoped",
    )

    def __init__(
        self,
        client: AsyncHookClient,
        body: bytes,
        *,
        timeout: float,
        deadline_at: float,
        total: float,
        clock: Callable[[], float],
        trace: Attempts | None,
    ) -> None:
        self.client = client
        self.trace = trace
        self.clock = clock  # the call's clock: anyio.current_time, or asyncio's loop.time
        self.body = body
        self.timeout = timeout
        self.deadline_at = deadline_at
        self.total = total
        self.unscoped = False  # no cancel scope keeps the deadline: the waits' own timers do
        self.as_bytes = False  # the attempts go to the pool as bytes (the fast path)
        self.attempts = 0
        self.sent = 0  # requests that may have reached the network
        self.extensions: dict[str, Any] = {}

    def past_deadline(self) -> bool:
        """Whether the call runs without a cancel scope and its deadline has come."""
        return self.unscoped and self.clock() >= self.deadline_at

    def sending(self) -> bool:
        """Whether the latest attempt was handed to the network (so it may have arrived)."""
        return bool(self.extensions.get(SENDING_EXTENSION))

    async def attempt(self, number: int) -> tuple[int, RateLimit | None]:
        """Make attempt ``number``: the status and rate limit of its success, or its error."""
        self.attempts = number
        self.extensions = {}
        try:
            if self.as_bytes:
                answer = await self.client._send_bytes(self, number)
            else:
                response = await self.client._send(self, number)
                answer = response.status_code, response.extensions.get(RATE_LIMIT_EXTENSION)
        except HookAPIError as exc:
            self.sent += self.sending()
            exc.attempts = self.sent
            self.extensions = {}
            if self.trace is not None:
                self.trace.failed(exc)
            raise
        self.sent += self.sending()
        if self.trace is not None:
            self.trace.answered(*answer)
        return answer


async def _read_bounded(response: httpx.Response) -> bytes:
    """Read at most :data:`MAX_ERROR_BODY` bytes, closing the stream's iterator either way."""
    chunks: list[bytes] = []
    size = 0
    iterator = aiter(response.stream)  # type: ignore[arg-type]
    try:
        async for chunk in iterator:
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_ERROR_BODY:
                break
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return b"".join(chunks)[:MAX_ERROR_BODY]


def _head(*pairs: tuple[bytes, bytes]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The request's headers but ``Content-Length``: as pairs, and as the lines to send.

    The lines go to the default pool's connections (``FIELDS_EXTENSION``), which send them as
    they are: built once per client, not per request.
    """
    return list(pairs), b"".join(b"%b: %b\r\n" % pair for pair in pairs)


def _hider(secret: Secret, proxy: httpx.URL | None) -> Callable[[str], str]:
    """What redacts a client's failure texts: the secret, and the proxy's credentials.

    The secret is found in any case and escape a server may echo it in (``redact``). The
    proxy's password alone is replaced only from 6 characters on: a shorter one would blank
    out ordinary words; its ``user:password`` pair and their base64 (the
    ``Proxy-Authorization`` header) always are.
    """
    hidden: set[str] = set()
    if proxy is not None and proxy.userinfo:
        pair = f"{proxy.username}:{proxy.password}"
        hidden |= {pair, proxy.userinfo.decode("ascii"), base64.b64encode(pair.encode()).decode()}
        if len(proxy.password) >= 6:
            hidden.add(proxy.password)
    ordered = sorted(hidden, key=len, reverse=True)  # a longer form first, whole

    def hide(text: str) -> str:
        text = redact(text, secret)  # the secret in any spelling a server may echo
        for value in ordered:
            text = text.replace(value, PLACEHOLDER)
        return text

    return hide


def _url_from_file(env_var: str) -> str:
    """The hook URL in the file that ``{env_var}_FILE`` names, for :meth:`from_env`."""
    file_var = f"{env_var}_FILE"
    path = os.environ.get(file_var, "").strip()
    if not path:
        raise InvalidInputError(f"The environment variable {env_var} is not set.")
    try:
        with open(path, "rb") as file:
            text = file.read(64 * 1024).decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInputError(
            f"{file_var} names {path}, which cannot be read: {reason}."
        ) from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"{file_var} names {path}, which is not UTF-8 text.") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidInputError(
            f"{file_var} names {path}, which must hold one non-blank line: the hook URL."
        )
    return lines[0]
