"""The CPU one post costs with OpenTelemetry absent, present but unconfigured, and recording.

Each mode runs in its own process (so that one's imports and global providers cannot touch
another's) and posts ``--posts`` messages one after another through a client whose inner
transport is an ``httpx.MockTransport`` answering 200 at once: no network, no quota wait, so
what is left is the client's own work per post. It reports ``time.process_time()`` per post,
the best of ``--repeats`` runs (the least disturbed by other work on the machine), in µs.

    python benchmarks/otel.py [--posts 20000] [--repeats 5] [--quick] [--hookapi PATH] [--out FILE]

Modes: ``absent`` (the ``opentelemetry`` import is blocked), ``unconfigured`` (installed, no
provider passed or set globally), ``sdk`` (the SDK's tracer and meter providers with an
in-memory span exporter and metric reader). ``--hookapi PATH`` puts another checkout's
package first on ``sys.path`` and runs the ``absent`` and ``unconfigured`` modes on it too
(a checkout from before the instrumentation, to compare). The table says the machine's load
average before and after the run (a shared machine's other work shows in these figures);
``--out`` writes it to a file as well (``nox -s bench`` writes ``benchmarks/results/otel.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap

CHILD = """
import json, sys, time
from importlib.abc import MetaPathFinder

MODE, POSTS, PATH = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if PATH:
    sys.path.insert(0, PATH)
if MODE == "absent":
    class Block(MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ModuleNotFoundError(name, name=name)
            return None
    sys.meta_path.insert(0, Block())

import anyio, httpx, hookapi

options = {}
if MODE == "sdk":
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    options = {
        "tracer_provider": tracer_provider,
        "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
    }

HEADERS = {"X-Rate-Limit-Remaining": "100"}


def answer(request):
    return httpx.Response(200, text="ok", headers=HEADERS)


async def main() -> float:
    client = hookapi.AsyncHookClient(
        hook_id="35d7bef2-3d7e-11ec-bfa2-42010a200115",
        secret="s" * 64,
        base_url="https://hooks.example.test/v1",
        transport=httpx.MockTransport(answer),
        quota=hookapi.MemoryQuota(),
        **options,
    )
    async with client:
        for _ in range(200):
            await client.post_message("warm up")
        if MODE == "sdk":
            spans.clear()
        started = time.process_time()
        for _ in range(POSTS):
            await client.post_message("hello")
        spent = time.process_time() - started
    if MODE == "sdk":
        assert len(spans.get_finished_spans()) == 2 * POSTS
    else:
        assert getattr(client, "_telemetry", None) is None
    return spent / POSTS


print(json.dumps(anyio.run(main)))
"""


def measure(mode: str, posts: int, path: str) -> float:
    """Microseconds of CPU per post in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), mode, str(posts), path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2,000 posts, 2 repeats")
    parser.add_argument("--hookapi", default="", help="another checkout's package directory")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    if args.quick:
        args.posts, args.repeats = 2_000, 2
    load_before = os.getloadavg()
    cells = [("absent", ""), ("unconfigured", ""), ("sdk", "")]
    if args.hookapi:
        cells += [("absent", args.hookapi), ("unconfigured", args.hookapi)]
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        # Interleaved, so that a slow spell of the machine falls on every mode alike.
        for mode, path in cells:
            label = f"{mode} ({path})" if path else mode
            runs.setdefault(label, []).append(measure(mode, args.posts, path))
    load_after = os.getloadavg()
    lines = [
        f"CPU per post over {args.posts:,} posts, {args.repeats} interleaved repeats; "
        f"Python {platform.python_version()}, {os.cpu_count()} cores; load average "
        f"(1, 5, 15 min) {_load(load_before)} before, {_load(load_after)} after.",
        "",
        "| mode | CPU per post, best (µs) | all runs (µs) |",
        "| --- | ---: | --- |",
    ]
    for label, values in runs.items():
        lines.append(f"| {label} | {min(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text)


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in averages)


if __name__ == "__main__":
    main()
