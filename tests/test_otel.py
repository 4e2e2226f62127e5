"""OpenTelemetry: the spans and metrics a post, a quota wait and an outbox report, secret-free."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv.attributes import (
    error_attributes,
    http_attributes,
    server_attributes,
    url_attributes,
)
from opentelemetry.semconv.metrics import http_metrics
from opentelemetry.trace import SpanKind, StatusCode

from hookapi import (
    APIConnectionError,
    AsyncHookClient,
    BadRequestError,
    HookClient,
    InvalidInputError,
    Outbox,
    RateLimitError,
    RetryPolicy,
)
from hookapi._otel import DURATION_BUCKETS
from hookapi.emulator import Emulator
from hookapi.testing import make_client as emulator_client

from .conftest import BASE, HOOK_ID, ClientFactory

pytestmark = pytest.mark.anyio


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def assert_no_secret(self, secret: str) -> None:
        """Search every span's name, attributes, events, links and status, and every metric."""
        texts: list[str] = []
        for span in self.finished():
            texts += [span.name, repr(dict(span.attributes or {}))]
            texts.append(span.status.description or "")
            for event in span.events:
                texts += [event.name, repr(dict(event.attributes or {}))]
            for link in span.links:
                texts.append(repr(dict(link.attributes or {})))
        data = self.reader.get_metrics_data()
        texts.append("" if data is None else data.to_json())
        blob = "\n".join(texts)
        assert secret not in blob
        assert secret.upper() not in blob


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, reader, tracer_provider, meter_provider)
    meter_provider.shutdown()
    tracer_provider.shutdown()


def traced(make_client: ClientFactory, otel: Telemetry, **options: Any) -> AsyncHookClient:
    return make_client(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **options
    )


def points(metric: Metric) -> list[Any]:
    return list(metric.data.data_points)


def test_the_attribute_names_are_the_semantic_conventions() -> None:
    names = {
        http_attributes.HTTP_REQUEST_METHOD,
        http_attributes.HTTP_RESPONSE_STATUS_CODE,
        http_attributes.HTTP_REQUEST_RESEND_COUNT,
        server_attributes.SERVER_ADDRESS,
        server_attributes.SERVER_PORT,
        url_attributes.URL_FULL,
        error_attributes.ERROR_TYPE,
    }
    assert names == {
        "http.request.method",
        "http.response.status_code",
        "http.request.resend_count",
        "server.address",
        "server.port",
        "url.full",
        "error.type",
    }
    assert http_metrics.HTTP_CLIENT_REQUEST_DURATION == "http.client.request.duration"


async def test_a_retried_post_is_one_internal_span_over_a_client_span_per_attempt(
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
    otel: Telemetry,
    secret: str,
) -> None:
    router.post(message_url).mock(
        side_effect=[
            httpx.Response(503, json={"error": "busy", "error_description": f"see {secret}"}),
            httpx.Response(200, text="ok", headers={"X-Rate-Limit-Remaining": "41"}),
        ]
    )
    async with traced(make_client, otel) as client:
        result = await client.post_message("hi")
    assert result.attempts == 2
    [outer] = otel.named("hookapi.post_message")
    assert outer.kind is SpanKind.INTERNAL
    assert outer.attributes is not None
    assert outer.attributes["hookapi.attempts"] == 2
    assert outer.status.status_code is StatusCode.UNSET
    first, second = sorted(otel.named("POST"), key=lambda span: span.start_time or 0)
    for span in (first, second):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == outer.context.span_id
        assert span.attributes is not None
        assert span.attributes["http.request.method"] == "POST"
        assert span.attributes["server.address"] == "hooks.example.test"
        assert span.attributes["server.port"] == 443
        assert span.attributes["url.full"] == client.url == f"{BASE}/{HOOK_ID}/***/message"
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    assert "http.request.resend_count" not in first.attributes
    [exception] = [event for event in first.events if event.name == "exception"]
    assert exception.attributes is not None
    assert "***" in str(exception.attributes["exception.message"])
    assert second.attributes["http.response.status_code"] == 200
    assert second.attributes["http.request.resend_count"] == 1
    assert "error.type" not in second.attributes
    otel.assert_no_secret(secret)

    metrics = otel.metrics()
    duration = metrics["http.client.request.duration"]
    assert duration.unit == "s"
    durations = points(duration)
    assert all(isinstance(p, HistogramDataPoint) for p in durations)
    assert {p.attributes.get("http.response.status_code") for p in durations} == {503, 200}
    assert all(tuple(p.explicit_bounds) == DURATION_BUCKETS for p in durations)
    [remaining] = points(metrics["hookapi.quota.remaining"])
    assert remaining.value == 41
    assert remaining.attributes == {"hookapi.hook.id": HOOK_ID}


async def test_a_connection_failure_records_its_exception_redacted(
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
    otel: Telemetry,
    secret: str,
) -> None:
    router.post(message_url).mock(side_effect=httpx.ConnectError(f"cannot reach {message_url}"))
    async with traced(make_client, otel, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(APIConnectionError):
            await client.post_message("hi")
    [outer] = otel.named("hookapi.post_message")
    [attempt] = otel.named("POST")
    for span in (outer, attempt):
        assert span.attributes is not None
        assert span.attributes["error.type"] == "hookapi.APIConnectionError"
        assert span.status.status_code is StatusCode.ERROR
        [event] = [event for event in span.events if event.name == "exception"]
        assert event.attributes is not None
        assert "***" in str(event.attributes["exception.message"])
        assert "ConnectError" in str(event.attributes["exception.stacktrace"])
    assert attempt.attributes is not None
    assert "http.response.status_code" not in attempt.attributes
    otel.assert_no_secret(secret)
    [point] = points(otel.metrics()["http.client.request.duration"])
    assert point.attributes["error.type"] == "hookapi.APIConnectionError"


async def test_a_refusal_echoing_the_secret_is_recorded_redacted(
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
    otel: Telemetry,
    secret: str,
) -> None:
    body = {"error": "bad", "error_description": f"no hook at {message_url} ({secret.upper()})"}
    router.post(message_url).mock(return_value=httpx.Response(400, json=body))
    async with traced(make_client, otel) as client:
        with pytest.raises(BadRequestError):
            await client.post_message("hi")
    [attempt] = otel.named("POST")
    assert attempt.attributes is not None
    assert attempt.attributes["error.type"] == "400"
    assert attempt.attributes["http.response.status_code"] == 400
    otel.assert_no_secret(secret)


async def test_a_transport_bug_naming_the_real_url_is_recorded_redacted(
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
    otel: Telemetry,
    secret: str,
) -> None:
    # Not an httpx error, so no hookapi error wraps it: only the span's redaction stands.
    router.post(message_url).mock(side_effect=RuntimeError(f"broken at {message_url}"))
    async with traced(make_client, otel) as client:
        with pytest.raises(RuntimeError):
            await client.post_message("hi")
    for span in (*otel.named("hookapi.post_message"), *otel.named("POST")):
        assert span.attributes is not None
        assert span.attributes["error.type"] == "RuntimeError"
        [event] = [event for event in span.events if event.name == "exception"]
        assert event.attributes is not None
        assert "broken at" in str(event.attributes["exception.message"])
        assert "***" in str(event.attributes["exception.stacktrace"])
    assert len(otel.named("POST")) == 1
    otel.assert_no_secret(secret)


async def test_a_quota_wait_is_an_event_of_the_call_and_a_histogram(otel: Telemetry) -> None:
    emulator = Emulator(per_hour=1, per_day=100)
    hook = emulator.create_hook("Bots")
    client = emulator_client(
        emulator, hook, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    await client.post_message("one", deadline=math.inf)
    await client.post_message("two", deadline=math.inf)
    calls = sorted(otel.named("hookapi.post_message"), key=lambda span: span.start_time or 0)
    assert len(calls) == 2
    assert [e.name for e in calls[0].events] == []
    [wait] = [e for e in calls[1].events if e.name == "hookapi.quota_wait"]
    assert wait.attributes is not None
    waited = wait.attributes["hookapi.quota.wait"]
    assert isinstance(waited, float)
    assert waited > 60  # the hour's one request was used: the second waited for the window
    # Each CLIENT span starts after its wait: the attempt is the request, not the queue.
    attempts = otel.named("POST")
    assert len(attempts) == 2
    assert all(a.attributes and a.attributes["http.response.status_code"] == 200 for a in attempts)
    metrics = otel.metrics()
    [histogram] = points(metrics["hookapi.quota.wait.duration"])
    assert histogram.count == 2
    assert histogram.sum == pytest.approx(waited)
    assert histogram.attributes == {"hookapi.hook.id": hook.id}
    [remaining] = points(metrics["hookapi.quota.remaining"])
    assert remaining.value == 0
    otel.assert_no_secret(hook.secret)


async def test_a_local_refusal_is_counted_and_sends_no_client_span(otel: Telemetry) -> None:
    emulator = Emulator(per_hour=1, per_day=100)
    hook = emulator.create_hook("Bots")
    client = emulator_client(
        emulator, hook, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    await client.post_message("one")
    with pytest.raises(RateLimitError) as caught:
        await client.post_message("two")
    assert caught.value.local
    assert len(otel.named("POST")) == 1
    refused = [s for s in otel.named("hookapi.post_message") if s.status.is_ok is False]
    [call] = refused
    assert call.attributes is not None
    assert call.attributes["error.type"] == "hookapi.RateLimitError"
    [count] = points(otel.metrics()["hookapi.client.local_refusals"])
    assert count.value == 1
    assert count.attributes == {"hookapi.hook.id": hook.id}
    otel.assert_no_secret(hook.secret)


async def test_outbox_delivery_links_to_the_span_that_put_the_message(otel: Telemetry) -> None:
    emulator = Emulator(per_hour=1000, per_day=100_000)
    hook = emulator.create_hook("Bots")
    client = emulator_client(
        emulator, hook, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    tracer = otel.tracer_provider.get_tracer("app")
    async with Outbox(client) as outbox:
        with tracer.start_as_current_span("handle request") as producer:
            receipt = await outbox.put("hello")
            [depth] = points(otel.metrics()["hookapi.outbox.depth"])
            assert depth.value == 1
        await receipt.wait()
    [deliver] = otel.named("hookapi.outbox.deliver")
    assert deliver.kind is SpanKind.CONSUMER
    [link] = deliver.links
    assert link.context.span_id == producer.get_span_context().span_id
    assert link.context.trace_id == producer.get_span_context().trace_id
    [call] = otel.named("hookapi.post_message")
    assert call.parent is not None
    assert call.parent.span_id == deliver.context.span_id
    [depth] = points(otel.metrics()["hookapi.outbox.depth"])
    assert depth.value == 0
    otel.assert_no_secret(hook.secret)


async def test_outbox_dead_letters_are_counted(
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
    otel: Telemetry,
    secret: str,
) -> None:
    router.post(message_url).mock(return_value=httpx.Response(400, json={"error": "bad"}))
    client = traced(make_client, otel)
    async with client, Outbox(client) as outbox:
        receipt = await outbox.put("hello")
        with pytest.raises(BadRequestError):
            await receipt.wait()
    [count] = points(otel.metrics()["hookapi.outbox.dead_letters"])
    assert count.value == 1
    otel.assert_no_secret(secret)


async def test_metrics_alone_report_without_a_tracer(otel: Telemetry) -> None:
    emulator = Emulator(per_hour=1000, per_day=100_000)
    hook = emulator.create_hook("Bots")
    client = emulator_client(emulator, hook, meter_provider=otel.meter_provider)
    async with Outbox(client) as outbox:
        await (await outbox.put("hello")).wait()
    await client.post_message("again")
    assert otel.finished() == []
    [point] = points(otel.metrics()["http.client.request.duration"])
    assert point.count == 2
    assert point.attributes["http.response.status_code"] == 200


async def test_traces_alone_report_without_a_meter(
    router: respx.MockRouter,
    make_client: ClientFactory,
    message_url: str,
    otel: Telemetry,
    secret: str,
) -> None:
    router.post(message_url).mock(return_value=httpx.Response(400, json={"error": "bad"}))
    client = make_client(tracer_provider=otel.tracer_provider)
    async with client, Outbox(client) as outbox:
        with pytest.raises(BadRequestError):
            await (await outbox.put("hello")).wait()
    assert {span.name for span in otel.finished()} == {
        "hookapi.outbox.deliver",
        "hookapi.post_message",
        "POST",
    }
    assert otel.reader.get_metrics_data() is None or otel.metrics() == {}
    otel.assert_no_secret(secret)


class _NoWeakref:
    """A meter provider that takes no weak reference (one with ``__slots__``, say)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: MeterProvider) -> None:
        self._inner = inner

    def get_meter(self, name: str, version: str | None = None) -> Any:
        return self._inner.get_meter(name, version)


async def test_a_provider_without_weak_references_still_gets_its_metrics(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str, otel: Telemetry
) -> None:
    router.post(message_url).mock(return_value=httpx.Response(200, text="ok"))
    async with make_client(meter_provider=_NoWeakref(otel.meter_provider)) as client:
        await client.post_message("hi")
    [point] = points(otel.metrics()["http.client.request.duration"])
    assert point.count == 1


def test_the_sync_client_reports_too(
    router: respx.MockRouter, secret: str, message_url: str, otel: Telemetry
) -> None:
    router.post(message_url).mock(return_value=httpx.Response(200, text="ok"))
    with HookClient.from_url(
        message_url.removesuffix("/message"),
        transport=httpx.MockTransport(router.async_handler),
        tracer_provider=otel.tracer_provider,
    ) as client:
        client.post_message("hi")
    assert sorted(span.name for span in otel.finished()) == ["POST", "hookapi.post_message"]
    otel.assert_no_secret(secret)


async def test_with_no_provider_anywhere_the_client_reports_nothing(
    router: respx.MockRouter, make_client: ClientFactory, message_url: str
) -> None:
    # No global provider is set in this process: the API hands out its proxy.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    router.post(message_url).mock(return_value=httpx.Response(200, text="ok"))
    async with make_client() as client:
        await client.post_message("hi")
        assert client._telemetry is None
        assert client._instrumentation() is None


def test_a_provider_option_must_be_a_provider(make_client: ClientFactory) -> None:
    with pytest.raises(InvalidInputError, match="tracer_provider must be"):
        make_client(tracer_provider=object())
    with pytest.raises(InvalidInputError, match="meter_provider must be"):
        make_client(meter_provider="yes")


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_global_providers_are_used_when_none_is_passed() -> None:
    out = _run(
        """
        import anyio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from hookapi.emulator import Emulator
        from hookapi.testing import make_client

        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        emulator = Emulator()
        client = make_client(emulator, emulator.create_hook())  # built before the SDK is set
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        anyio.run(client.post_message, "hi")
        print(sorted(span.name for span in spans.get_finished_spans()))
        data = reader.get_metrics_data()
        names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
        print("http.client.request.duration" in names)
        """
    )
    assert out.split() == ["['POST',", "'hookapi.post_message']", "True"]


def test_hookapi_imports_and_posts_without_opentelemetry() -> None:
    out = _run(
        """
        import sys
        from importlib.abc import MetaPathFinder

        class NoOpenTelemetry(MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        import anyio
        import hookapi
        from hookapi.emulator import Emulator
        from hookapi.testing import make_client

        emulator = Emulator()
        hook = emulator.create_hook()
        client = make_client(emulator, hook)
        result = anyio.run(client.post_message, "hi")
        assert client._telemetry is None
        assert not any(name.startswith("opentelemetry") for name in sys.modules)
        print(result.status_code, [m.text for m in emulator.messages()])
        """
    )
    assert out.strip() == "200 ['hi']"


def test_with_no_provider_set_a_post_does_not_load_the_api() -> None:
    # The API is installed here; nothing set a provider, so it is not even imported (cold start).
    out = _run(
        """
        import sys
        import anyio
        from hookapi.emulator import Emulator
        from hookapi.testing import make_client

        emulator = Emulator()
        client = make_client(emulator, emulator.create_hook())
        result = anyio.run(client.post_message, "hi")
        print(result.status_code, client._telemetry is None)
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry.")))
        """
    )
    assert out.split("\n")[:2] == ["200 True", "[]"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_PYTHON_TRACER_PROVIDER", "sdk_tracer_provider"),
        ("OTEL_PYTHON_METER_PROVIDER", "sdk_meter_provider"),
    ],
)
def test_a_provider_named_by_the_environment_is_still_used(variable: str, value: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import anyio
                from hookapi.emulator import Emulator
                from hookapi.testing import make_client

                emulator = Emulator()
                client = make_client(emulator, emulator.create_hook())
                anyio.run(client.post_message, "hi")
                print(client._telemetry is not None)
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, variable: value},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
