"""The whole benchmark suite in one run: start nginx, measure every client, print one table.

Each measurement runs in a fresh interpreter (``loadgen.py``), and the repeats are interleaved
across clients so that drift on a shared machine hits every client alike; each figure is the
median of the repeats. Throughput is messages per wall second; CPU is the client process's CPU
time (``time.process_time()``) per message. Then: ``import`` time (``importtime.py``) and quota
goodput on a virtual clock (``quota.py``).

    python benchmarks/run.py            # the full suite (a few minutes)
    python benchmarks/run.py --quick    # fewer posts and one repeat (under two minutes)
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _server
import coldstart
import importtime

HERE = Path(__file__).parent
LEVELS = (1, 32, 128)
FAST_ENV = "HOOKAPI_BENCH_TRANSPORT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A row of the table: a ``loadgen.py`` client and what it stands for."""

    key: str
    label: str
    kind: str  # "hookapi", "bare" (a transport under hookapi) or "peer"
    bare: str | None = None  # for hookapi rows: the bare transport row it runs on
    slow: bool = False  # posts fewer messages (its figures are still per message)
    shape: str = "worker"  # "worker": a task per slot; "task": a task per message

    @property
    def id(self) -> str:
        """The row's key in the results: the client, and the driver shape it ran in."""
        return self.key if self.shape == "worker" else f"{self.key}/task"


CLIENTS = (
    Client(
        key="hookapi",
        label="hookapi, default transport (ConnectionPool)",
        kind="hookapi",
        bare="transport-pool",
    ),
    Client(
        key="hookapi-aiohttp",
        label="hookapi on httpx-aiohttp",
        kind="hookapi",
        bare="transport-aiohttp",
    ),
    Client(key="hookapi-trio", label="hookapi on trio, default transport", kind="hookapi"),
    Client(key="hookapi-fast", label="hookapi on {fast}", kind="hookapi", bare="transport-fast"),
    Client(key="transport-pool", label="bare hookapi ConnectionPool", kind="bare"),
    Client(key="transport-httpcore", label="bare httpx.AsyncHTTPTransport", kind="bare"),
    Client(key="transport-aiohttp", label="bare httpx-aiohttp transport", kind="bare"),
    Client(key="transport-fast", label="bare {fast}", kind="bare"),
    Client(key="httpx", label="httpx.AsyncClient (default transport)", kind="peer"),
    Client(key="httpx-aiohttp", label="httpx.AsyncClient on httpx-aiohttp", kind="peer"),
    Client(key="slack_sdk", label="slack_sdk AsyncWebhookClient (aiohttp)", kind="peer"),
    Client(
        key="discord-webhook",
        label="discord-webhook AsyncDiscordWebhook (httpx)",
        kind="peer",
        slow=True,
    ),
    Client(key="aiohttp", label="raw aiohttp ClientSession", kind="peer"),
    Client(key="pyreqwest", label="pyreqwest Client (reqwest, Rust)", kind="peer"),
    Client(key="floor", label="floor: asyncio Protocol + httptools, no guarantees", kind="floor"),
)
#: Driver shapes: a task per slot taking message after message, and a task per message.
SHAPES = ("worker", "task")
#: Rows measured in both shapes (the rest only with a worker per slot).
BOTH_SHAPES = {"hookapi", "aiohttp", "slack_sdk", "pyreqwest", "floor"}


@dataclass(slots=True, kw_only=True)
class Cell:
    """The repeats of one client at one concurrency."""

    posts: int
    rates: list[float] = field(default_factory=list)  # messages per second
    cpus: list[float] = field(default_factory=list)  # CPU microseconds per message

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def measure(
    client: str, server: str, posts: int, in_flight: int, env: dict[str, str], shape: str = "worker"
) -> Any:
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            f"--client={client}",
            f"--url={server}",
            f"--posts={posts}",
            f"--in-flight={in_flight}",
            f"--shape={shape}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{client} at {in_flight} in flight failed:\n{done.stderr}")
    return json.loads(done.stdout)


def throughput(
    clients: list[Client], server: str, *, posts: int, slow_posts: int, repeats: int, fast: str
) -> dict[str, dict[int, Cell]]:
    env = dict(os.environ)
    if fast:
        env[FAST_ENV] = fast
    cells = {
        c.id: {n: Cell(posts=slow_posts if c.slow else posts) for n in LEVELS} for c in clients
    }
    for repeat in range(repeats):
        for client in clients:
            for in_flight in LEVELS:
                cell = cells[client.id][in_flight]
                result = measure(client.key, server, cell.posts, in_flight, env, client.shape)
                cell.rates.append(cell.posts / result["wall"])
                cell.cpus.append(result["cpu"] / cell.posts * 1e6)
                print(
                    f"  [{repeat + 1}/{repeats}] {client.id:<20} {in_flight:>3} in flight: "
                    f"{cell.rates[-1]:>8,.0f} msg/s {cell.cpus[-1]:>7,.0f} us CPU/msg",
                    file=sys.stderr,
                )
    return cells


def byte_compile() -> None:
    """Byte-compile hookapi and the installed packages, as ``pip install`` does.

    Without it, an environment made by a tool that leaves the compiling to the first import
    (uv's default), or run with ``PYTHONDONTWRITEBYTECODE``, charges every fresh interpreter
    of the cold-start and import rows the compiling of each module it loads: about 40 ms for
    hookapi alone, more than the +30 ms the import row's goal allows.
    """
    import importlib.util  # noqa: PLC0415
    import sysconfig  # noqa: PLC0415

    spec = importlib.util.find_spec("hookapi")  # found, not imported: this process posts nothing
    if spec is None or spec.origin is None:
        raise SystemExit("hookapi is not installed in this environment")
    folders = {Path(spec.origin).parent, HERE}
    folders |= {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    for folder in sorted(folders):
        compileall.compile_dir(folder, quiet=2, workers=0)


def quota(quick: bool) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(HERE / "quota.py"), "--phase=0", "--phase=1800"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        print(f"quota goodput could not run:\n{done.stderr}", file=sys.stderr)
        return []
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def _fmt_rate(cell: Cell) -> str:
    return f"{cell.rate:,.0f} msg/s, {cell.cpu:,.0f} us"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(
    clients: list[Client],
    cells: dict[str, dict[int, Cell]],
    imports: dict[str, float],
    quotas: list[dict[str, Any]],
    colds: dict[str, float] | None = None,
) -> tuple[str, dict[str, bool]]:
    """One Markdown table: every client, then each goal's ratio and verdict."""
    rows = ["| measurement | 1 in flight | 32 in flight | 128 in flight | goal | verdict |"]
    rows.append("| --- | ---: | ---: | ---: | --- | --- |")
    goals: dict[str, bool] = {}
    by_key = {c.id: c for c in clients}
    for client in clients:
        row = cells[client.id]
        rows.append(
            f"| {client.label} | "
            + " | ".join(_fmt_rate(row[n]) for n in LEVELS)
            + f" | {client.kind} | |"
        )
    hookapi_rows = [c for c in clients if c.kind == "hookapi" and c.shape == "worker"]
    for client in hookapi_rows:
        row = cells[client.id]
        ratios = [row[n].rate / row[1].rate for n in LEVELS]
        ok = min(ratios[1:]) >= 1.0
        goals[f"scaling: {client.label}"] = ok
        rows.append(
            f"| scaling, {client.label}: msg/s / msg/s at 1 | "
            + " | ".join(f"{r:.2f}x" for r in ratios)
            + f" | >= 1.00x at 32 and 128 | {_verdict(ok)} |"
        )
    peers = [c for c in clients if c.kind == "peer" and c.shape == "worker"]
    # hookapi on asyncio: its default transport, or one it could be given for speed.
    fast_rows = [c for c in hookapi_rows if c.key in ("hookapi", "hookapi-aiohttp", "hookapi-fast")]
    fast_rows = fast_rows or hookapi_rows
    if peers and fast_rows:
        best = max(fast_rows, key=lambda c: cells[c.id][32].rate)
        top = max(peers, key=lambda c: cells[c.id][32].rate)
        ratios = [cells[best.id][n].rate / max(cells[p.id][n].rate for p in peers) for n in LEVELS]
        ok = ratios[1] >= 1.0
        goals["ahead of every peer at 32"] = ok
        rows.append(
            f"| {best.label} / fastest peer (at 32: {top.label}) | "
            + " | ".join(f"{r:.2f}x" for r in ratios)
            + f" | > 1.00x at 32 | {_verdict(ok)} |"
        )
    for client in hookapi_rows:
        if client.bare not in cells:
            continue
        bare = cells[client.bare]
        extra = [cells[client.id][n].cpu / bare[n].cpu - 1 for n in LEVELS]
        ok = max(extra) <= 0.10
        goals[f"overhead: {client.label}"] = ok
        rows.append(
            f"| CPU/msg of {client.label} over {by_key[client.bare].label} | "
            + " | ".join(f"{e:+.0%}" for e in extra)
            + f" | <= +10% | {_verdict(ok)} |"
        )
    for shape in SHAPES:
        _hot_path_goals(cells, shape, rows, goals)
    if colds:
        ok = colds["hookapi"] <= colds["aiohttp"]
        goals["cold start"] = ok
        rows.append(
            "| cold start, interpreter start to first answer, import included: "
            + ", ".join(f"{client} {ms:,.0f} ms" for client, ms in colds.items())
            + f" | | | | hookapi <= aiohttp | {_verdict(ok)} |"
        )
    if imports:
        delta = imports["hookapi"] - imports["httpx"]
        ok = delta <= 30.0
        goals["import"] = ok
        rows.append(
            f"| import hookapi - import httpx ({imports['hookapi']:.1f} - "
            f"{imports['httpx']:.1f} ms) | {delta:+.1f} ms | | | <= +30 ms | {_verdict(ok)} |"
        )
    for result in quotas:
        cell = (
            f"{result['refused']} refused, {result['failed']} failed, "
            f"{result['finish']:,.0f} s / {result['ideal']:,.0f} s ideal = {result['ratio']:.3f}x"
        )
        ok = result["refused"] == 0 and result["failed"] == 0 and result["ratio"] <= 1.10
        what = "quota goodput"
        if result["phase"]:
            # A client cannot learn where a fixed window starts: informational, not a goal.
            what = f"quota goodput, starting {result['phase']:,.0f} s into the hour"
        else:
            goals[f"quota: {result['window']}"] = ok
        rows.append(
            f"| {what}, {result['window']} window ({result['messages']} messages, "
            f"{result['tasks']} tasks, {result['per_hour']}/hour) | {cell} | | | "
            f"0 refused, <= 1.10x | {_verdict(ok)} |"
        )
    return "\n".join(rows), goals


def _hot_path_goals(
    cells: dict[str, dict[int, Cell]], shape: str, rows: list[str], goals: dict[str, bool]
) -> None:
    """The hot path's goals in one driver shape: CPU against the floor, msg/s against peers."""
    suffix = "" if shape == "worker" else "/task"
    what = "a worker per slot" if shape == "worker" else "a task per message"
    ours, floor = cells.get(f"hookapi{suffix}"), cells.get(f"floor{suffix}")
    if ours is None:
        return
    cpu = [ours[n].cpu for n in LEVELS]
    ok = cpu[1] <= 45.0
    goals[f"CPU at 32, {what}"] = ok
    rows.append(
        f"| hookapi CPU us/msg, {what} | "
        + " | ".join(f"{c:,.0f}" for c in cpu)
        + f" | <= 45 at 32 | {_verdict(ok)} |"
    )
    if floor is not None:
        ratio = [ours[n].cpu / floor[n].cpu for n in LEVELS]
        ok = ratio[0] <= 2.5 and ratio[2] <= 2.5
        goals[f"CPU against the floor, {what}"] = ok
        rows.append(
            f"| hookapi CPU / floor CPU, {what} | "
            + " | ".join(f"{r:.2f}x" for r in ratio)
            + f" | <= 2.5x at 1 and 128 | {_verdict(ok)} |"
        )
    ok = ours[128].rate >= ours[32].rate
    goals[f"128 no slower than 32, {what}"] = ok
    rows.append(
        f"| hookapi msg/s at 128 / at 32, {what} | | | {ours[128].rate / ours[32].rate:.2f}x "
        f"| >= 1.00x | {_verdict(ok)} |"
    )
    at_32 = 2.0 if shape == "worker" else 1.5
    for peer, need in (("aiohttp", (1.3, at_32, 1.3)), ("pyreqwest", (1.0, 1.0, 1.0))):
        theirs = cells.get(f"{peer}{suffix}")
        if theirs is None:
            continue
        ratio = [ours[n].rate / theirs[n].rate for n in LEVELS]
        ok = all(r >= w for r, w in zip(ratio, need, strict=True))
        goals[f"msg/s against {peer}, {what}"] = ok
        rows.append(
            f"| hookapi msg/s / {peer} msg/s, {what} | "
            + " | ".join(f"{r:.2f}x" for r in ratio)
            + " | >= "
            + " / ".join(f"{w:.1f}x" for w in need)
            + f" | {_verdict(ok)} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 posts, one repeat")
    parser.add_argument("--posts", type=int, help="posts per measurement (default 3,000)")
    parser.add_argument("--repeats", type=int, help="repeats per cell, median kept (default 3)")
    parser.add_argument("--server", help="use this server instead of starting nginx")
    parser.add_argument("--clients", help="comma-separated client keys (default: all)")
    parser.add_argument(
        "--fast-transport",
        default=os.environ.get(FAST_ENV, ""),
        help="module:callable returning an inner transport to measure as hookapi-fast",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where to write")
    args = parser.parse_args(argv)
    posts = args.posts or (1000 if args.quick else 3000)
    repeats = args.repeats or (1 if args.quick else 3)
    slow_posts = max(posts // 10, 50)
    wanted = set(args.clients.split(",")) if args.clients else None
    clients = [
        Client(
            **{
                **asdict(c),
                "label": c.label.format(fast=args.fast_transport)
                + ("" if shape == "worker" else ", a task per message"),
                "shape": shape,
            }
        )
        for shape in SHAPES
        for c in CLIENTS
        if (wanted is None or c.key in wanted)
        and (args.fast_transport or not c.key.endswith("-fast"))
        and (shape == "worker" or c.key in BOTH_SHAPES)
    ]
    started = time.monotonic()
    byte_compile()
    print(f"{len(clients)} clients x {LEVELS} in flight x {repeats} repeats", file=sys.stderr)
    if args.server:
        cells = throughput(
            clients,
            args.server,
            posts=posts,
            slow_posts=slow_posts,
            repeats=repeats,
            fast=args.fast_transport,
        )
        colds = coldstart.median_of(repeats, args.server)
    else:
        with _server.nginx() as server:
            print(f"nginx on {server}", file=sys.stderr)
            cells = throughput(
                clients,
                server,
                posts=posts,
                slow_posts=slow_posts,
                repeats=repeats,
                fast=args.fast_transport,
            )
            colds = coldstart.median_of(repeats, server)
    imports = importtime.best_of(5 if args.quick else 15, "httpx", "hookapi")
    quotas = quota(args.quick)
    text, goals = table(clients, cells, imports, quotas, colds)
    elapsed = time.monotonic() - started
    header = (
        f"{posts:,} posts per cell ({slow_posts:,} for discord-webhook), median of {repeats}; "
        "each cell: messages per second, client CPU us per message. "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, {elapsed:.0f} s."
    )
    print()
    print(header)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(f"{header}\n\n{text}\n")
    record = {
        "posts": posts,
        "repeats": repeats,
        "cells": {
            key: {str(n): asdict(cell) for n, cell in row.items()} for key, row in cells.items()
        },
        "imports_ms": imports,
        "cold_start_ms": colds,
        "quota": quotas,
        "goals": goals,
    }
    (args.out / "latest.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
