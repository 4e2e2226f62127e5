"""OpenTelemetry traces and metrics for the client and the outbox (the ``otel`` extra).

Nothing here runs unless OpenTelemetry's API is installed and a tracer or meter provider is
passed to the client or set globally before its first post: otherwise the client keeps
``None`` for its :class:`Instrumentation` and pays one comparison per call. Every text that
leaves through a span (URLs, exception messages and stack traces) is the redacted one.
"""

from __future__ import annotations

import os
import sys
import traceback
import weakref
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from ._exceptions import APIStatusError, HookAPIError, InvalidInputError, RateLimitError
from ._http import QUOTA_PASSED_EXTENSION
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    import httpx
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.trace import Link, Span, Tracer, TracerProvider

    from ._quota import RateLimit

__all__ = [
    "DURATION_BUCKETS",
    "Attempts",
    "Instrumentation",
    "check_providers",
    "instrumentation",
]

T = TypeVar("T", bound="_Posted")
Watched = TypeVar("Watched")

#: The HTTP semantic conventions' advised buckets for ``http.client.request.duration``.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# Quota waits run from nothing to an hour (a used-up hourly window).
_WAIT_BUCKETS = (0.0, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600)
_HOOK_ID = "hookapi.hook.id"

_api_missing: bool | None = None  # None until the first client looks


def _api_installed() -> bool:
    """Whether ``opentelemetry-api`` imports (asked once per process: a failed import is slow)."""
    global _api_missing  # noqa: PLW0603
    if _api_missing is None:
        try:
            import opentelemetry.metrics  # noqa: PLC0415
            import opentelemetry.trace  # noqa: F401, PLC0415
        except ImportError:
            _api_missing = True
        else:
            _api_missing = False
    return not _api_missing


def _globals_may_be_set() -> bool:
    """Whether a global provider could be set, answered without importing the API.

    Setting one imports ``opentelemetry.trace`` or ``opentelemetry.metrics`` first, and the
    API loads one itself only when ``OTEL_PYTHON_TRACER_PROVIDER`` or
    ``OTEL_PYTHON_METER_PROVIDER`` names it: with neither, the answer is no and the API (tens of
    milliseconds to import) is not loaded for a client that would report nothing.
    """
    return (
        "opentelemetry.trace" in sys.modules
        or "opentelemetry.metrics" in sys.modules
        or "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
        or "OTEL_PYTHON_METER_PROVIDER" in os.environ
    )


def _global_tracer_provider() -> TracerProvider | None:
    from opentelemetry import trace  # noqa: PLC0415

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None  # nothing configured: a span would go nowhere
    return provider


def _global_meter_provider() -> MeterProvider | None:
    from opentelemetry import metrics  # noqa: PLC0415

    provider = metrics.get_meter_provider()
    # Until one is set, the API hands out a proxy (a private class) that records nothing.
    if isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__.startswith(
        "_Proxy"
    ):
        return None
    return provider


def check_providers(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
) -> tuple[TracerProvider | None, MeterProvider | None]:
    """The client's provider options, checked by shape (the API need not be importable here).

    Raises:
        InvalidInputError: One is not ``None`` and not a provider.
    """
    for name, provider, method in (
        ("tracer_provider", tracer_provider, "get_tracer"),
        ("meter_provider", meter_provider, "get_meter"),
    ):
        if provider is not None and not callable(getattr(provider, method, None)):
            raise InvalidInputError(
                f"{name} must be an OpenTelemetry provider, not {type(provider).__name__}."
            )
    return tracer_provider, meter_provider


def instrumentation(
    *,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    url: httpx.URL,
    url_full: str,
    hook_id: str,
    hide: Callable[[str], str],
) -> Instrumentation | None:
    """What one client reports through, or ``None`` when nothing would receive it.

    Args:
        tracer_provider: The client's option; ``None`` takes the global one if it is set.
        meter_provider: The client's option; ``None`` takes the global one if it is set.
        url: The request URL (its host and port are reported).
        url_full: The request URL with ``***`` for the secret, exactly as errors show it.
        hook_id: The hook's id, the attribute that tells hooks apart in hookapi's metrics.
        hide: The client's redaction, applied to every exception text before it is recorded.
    """
    if tracer_provider is None and meter_provider is None and not _globals_may_be_set():
        return None
    if not _api_installed():
        return None
    tracers = tracer_provider if tracer_provider is not None else _global_tracer_provider()
    meters = meter_provider if meter_provider is not None else _global_meter_provider()
    if tracers is None and meters is None:
        return None
    return Instrumentation(
        tracer=None if tracers is None else tracers.get_tracer("hookapi", __version__),
        instruments=None if meters is None else _instruments_for(meters),
        url=url,
        url_full=url_full,
        hook_id=hook_id,
        hide=hide,
    )


class _Posted(Protocol):
    @property
    def attempts(self) -> int: ...


class _Instruments:
    """One meter's instruments, shared by every client and outbox reporting to it."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.quota_wait = meter.create_histogram(
            "hookapi.quota.wait.duration",
            unit="s",
            description="Time a request waited for the hook's quota before it could be sent.",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )
        self.dead_letters = meter.create_counter(
            "hookapi.outbox.dead_letters",
            unit="{message}",
            description="Messages an outbox gave up on (failed or of unknown delivery).",
        )
        self.local_refusals = meter.create_counter(
            "hookapi.client.local_refusals",
            unit="{request}",
            description="Calls the client refused itself: the quota could not come back in time.",
        )
        self.remaining: dict[str, int] = {}
        # Outbox -> (its attributes, how to read its depth); weak, so a dropped outbox leaves.
        self.outboxes: weakref.WeakKeyDictionary[Any, tuple[dict[str, str], Callable[[Any], int]]]
        self.outboxes = weakref.WeakKeyDictionary()
        meter.create_observable_gauge(
            "hookapi.quota.remaining",
            callbacks=[self._observe_remaining],
            unit="{request}",
            description="Requests the hook may still send, as its latest answer said.",
        )
        meter.create_observable_gauge(
            "hookapi.outbox.depth",
            callbacks=[self._observe_depth],
            unit="{message}",
            description="Messages an outbox holds that are not delivered yet.",
        )

    def _observe_remaining(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        # Called from the exporter's thread: list() copies the items in one step.
        return [Observation(n, {_HOOK_ID: hook}) for hook, n in list(self.remaining.items())]

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        return [
            Observation(depth(outbox), attrs)
            for outbox, (attrs, depth) in list(self.outboxes.items())
        ]


_shared: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()


def _instruments_for(provider: MeterProvider) -> _Instruments:
    """The provider's instruments, created once (a second set would be reported twice)."""
    try:
        return _shared[provider]
    except KeyError:
        pass
    except TypeError:  # a provider that takes no weak reference: not shared
        return _Instruments(provider.get_meter("hookapi", __version__))
    instruments = _shared[provider] = _Instruments(provider.get_meter("hookapi", __version__))
    return instruments


class Instrumentation:
    """How one client reports: its tracer and instruments, and the attributes of its requests.

    Attributes:
        tracer: Where spans go, or ``None`` (metrics only).
        instruments: The meter's instruments, or ``None`` (traces only).
    """

    __slots__ = ("_attributes", "_hide", "_hook", "_metric_attributes", "instruments", "tracer")

    def __init__(
        self,
        *,
        tracer: Tracer | None,
        instruments: _Instruments | None,
        url: httpx.URL,
        url_full: str,
        hook_id: str,
        hide: Callable[[str], str],
    ) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self._hide = hide
        self._hook = hook_id
        port = url.port or (443 if url.scheme == "https" else 80)
        self._metric_attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "server.address": url.host,
            "server.port": port,
        }
        self._attributes = {**self._metric_attributes, "url.full": url_full}

    async def post(self, post: Callable[[Attempts], Awaitable[T]]) -> T:
        """Run one ``post_message`` call inside its INTERNAL span, counting a local refusal."""
        tracer = self.tracer
        if tracer is None:
            span_context: AbstractContextManager[Span | None] = nullcontext()
        else:
            from opentelemetry.trace import SpanKind  # noqa: PLC0415

            span_context = tracer.start_as_current_span(
                "hookapi.post_message",
                kind=SpanKind.INTERNAL,
                attributes={_HOOK_ID: self._hook, "url.full": self._attributes["url.full"]},
                record_exception=False,
                set_status_on_exception=False,
            )
        with span_context as span:
            attempts = Attempts(self, span)
            try:
                result = await post(attempts)
            except BaseException as exc:
                attempts.close(exc)
                if isinstance(exc, RateLimitError) and exc.local and self.instruments is not None:
                    self.instruments.local_refusals.add(1, {_HOOK_ID: self._hook})
                if span is not None:
                    if isinstance(exc, HookAPIError):
                        span.set_attribute("hookapi.attempts", exc.attempts)
                    self.fail(span, exc)
                raise
            if span is not None:
                span.set_attribute("hookapi.attempts", result.attempts)
            return result

    def fail(self, span: Span, exc: BaseException) -> None:
        """Mark ``span`` failed by ``exc``, its texts redacted."""
        from opentelemetry.trace import StatusCode  # noqa: PLC0415

        span.set_attribute("error.type", _error_type(exc))
        span.set_status(StatusCode.ERROR)
        hide = self._hide
        span.record_exception(
            exc,
            attributes={
                "exception.message": hide(str(exc)),
                "exception.stacktrace": hide("".join(traceback.format_exception(exc))),
            },
            escaped=True,
        )

    def link(self) -> Link | None:
        """A link to the span current here (a ``put``), for the span that delivers later."""
        from opentelemetry import trace  # noqa: PLC0415

        context = trace.get_current_span().get_span_context()
        return trace.Link(context) if context.is_valid else None

    def delivering(self, link: Link | None, message_id: int) -> AbstractContextManager[Any]:
        """The span an outbox delivers one message in, linked to the one that put it."""
        if self.tracer is None:
            return nullcontext()
        from opentelemetry.trace import SpanKind  # noqa: PLC0415

        return self.tracer.start_as_current_span(
            "hookapi.outbox.deliver",
            kind=SpanKind.CONSUMER,
            links=None if link is None else [link],
            attributes={_HOOK_ID: self._hook, "hookapi.outbox.message.id": message_id},
            record_exception=False,
        )

    def watch_outbox(self, outbox: Watched, depth: Callable[[Watched], int]) -> None:
        """Report ``depth(outbox)`` in ``hookapi.outbox.depth`` while ``outbox`` lives.

        ``depth`` takes the outbox as its argument (an unbound method): a bound one, held here,
        would keep the outbox alive.
        """
        if self.instruments is not None:
            self.instruments.outboxes[outbox] = ({_HOOK_ID: self._hook}, depth)

    def dead_letter(self) -> None:
        """Count one new dead letter."""
        if self.instruments is not None:
            self.instruments.dead_letters.add(1, {_HOOK_ID: self._hook})


class Attempts:
    """The attempts of one call: each gets a CLIENT span once the quota lets it go."""

    __slots__ = ("_entered", "_instrumentation", "_parent", "_resend", "_sent_at", "_span")

    def __init__(self, instrumentation: Instrumentation, parent: Span | None) -> None:
        self._instrumentation = instrumentation
        self._parent = parent
        self._entered = 0.0
        self._resend = 0
        self._sent_at: float | None = None
        self._span: Span | None = None

    def start(self, extensions: dict[str, Any], resend: int) -> None:
        """An attempt begins (it may wait for the quota first); ``resend``: requests before it."""
        self._entered = anyio.current_time()
        self._resend = resend
        extensions[QUOTA_PASSED_EXTENSION] = self._passed

    def _passed(self) -> None:
        now = anyio.current_time()
        waited = now - self._entered
        self._sent_at = now
        owner = self._instrumentation
        if owner.instruments is not None:
            owner.instruments.quota_wait.record(waited, {_HOOK_ID: owner._hook})
        if owner.tracer is None:
            return
        from opentelemetry import trace  # noqa: PLC0415

        parent = self._parent
        if parent is not None and waited > 0:
            parent.add_event("hookapi.quota_wait", {"hookapi.quota.wait": waited})
        attributes: dict[str, str | int] = dict(owner._attributes)
        if self._resend:
            attributes["http.request.resend_count"] = self._resend
        self._span = owner.tracer.start_span(
            "POST",
            context=None if parent is None else trace.set_span_in_context(parent),
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
        )

    def answered(self, status_code: int, rate_limit: RateLimit | None) -> None:
        """The attempt got a success answer."""
        self._end(status_code, rate_limit, None)

    def failed(self, exc: HookAPIError) -> None:
        """The attempt failed: an error status, no answer, or refused before it was sent."""
        if isinstance(exc, APIStatusError):
            self._end(exc.status_code, exc.rate_limit, exc)
        else:
            self._end(None, None, exc)

    def close(self, exc: BaseException) -> None:
        """The call ended by ``exc``; an attempt still open (a cancellation) ends with it."""
        self._end(None, None, exc)

    def _end(
        self, status: int | None, rate_limit: RateLimit | None, exc: BaseException | None
    ) -> None:
        sent_at = self._sent_at
        if sent_at is None:
            return  # nothing left: no span, no duration (a local refusal, or already ended)
        self._sent_at = None
        owner = self._instrumentation
        attributes: dict[str, str | int] = dict(owner._metric_attributes)
        if status is not None:
            attributes["http.response.status_code"] = status
        if exc is not None:
            attributes["error.type"] = _error_type(exc)
        if owner.instruments is not None:
            owner.instruments.duration.record(anyio.current_time() - sent_at, attributes)
            if rate_limit is not None and rate_limit.remaining is not None:
                owner.instruments.remaining[owner._hook] = rate_limit.remaining
        span, self._span = self._span, None
        if span is None:
            return
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if exc is not None:
            owner.fail(span, exc)
        span.end()


def _error_type(exc: BaseException) -> str:
    """``error.type`` as the conventions ask: the status code, else the exception's class.

    A local refusal has a 429 status but never left: its class says so, not a status.
    """
    if isinstance(exc, APIStatusError) and not (isinstance(exc, RateLimitError) and exc.local):
        return str(exc.status_code)
    cls = type(exc)
    module = "hookapi" if isinstance(exc, HookAPIError) else cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
