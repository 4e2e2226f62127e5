"""What ``logger.error`` costs the caller with a HookHandler attached, and how a flood arrives.

The caller's side: each ``logger.error`` call is timed with ``perf_counter`` while the
handler's own thread delivers to the emulator in process on a virtual clock (its pacing
and quota waits take no real time). Reported: p50, p99 and max per call, and for comparison
the same logger with a ``logging.NullHandler``. The delivery side: the flood of 500 records
in 10 s against a 60-an-hour hook, run on the virtual clock: messages posted, refusals,
when the first and the last arrived.

    python benchmarks/log_handler.py [--records N] [--repeats N]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import time

import anyio

from hookapi.emulator import Emulator
from hookapi.logging import HookHandler
from hookapi.testing import VirtualTimeEventLoop, make_client


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return statistics.median(ordered), p99, ordered[-1]


def caller_cost(records: int, handler: logging.Handler) -> list[float]:
    """Seconds each ``logger.error`` call took, with ``handler`` on the logger."""
    logger = logging.getLogger(f"bench.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    samples = []
    try:
        for i in range(records):
            started = time.perf_counter()
            logger.error("payment %d failed for order %s", i, "A42")
            samples.append(time.perf_counter() - started)
    finally:
        logger.removeHandler(handler)
        handler.close()
    return samples


def hook_handler(records: int) -> HookHandler:
    emulator = Emulator(per_hour=60, per_day=1000)
    client = make_client(emulator, emulator.create_hook("Alerts"))
    options = {"loop_factory": VirtualTimeEventLoop}
    return HookHandler(client, capacity=records, drain_timeout=5.0, backend_options=options)


def flood() -> dict[str, float]:
    """The flood of 500 records in 10 s against 60 an hour, on the virtual clock."""
    emulator = Emulator(per_hour=60, per_day=1000)
    handler = HookHandler(make_client(emulator, emulator.create_hook()), drain_timeout=math.inf)
    logger = logging.getLogger("bench.flood")
    logger.propagate = False
    logger.addHandler(handler)
    outcome: dict[str, float] = {}

    async def main() -> None:
        start = anyio.current_time()
        async with handler.delivering():
            for i in range(500):
                logger.error("payment %d failed for order %s", i, f"A{i % 7}")
                await anyio.sleep(0.02)
                if "first" not in outcome and emulator.messages():
                    outcome["first"] = anyio.current_time() - start
        outcome["last"] = anyio.current_time() - start

    anyio.run(main, backend_options={"loop_factory": VirtualTimeEventLoop})
    logger.removeHandler(handler)
    outcome["messages"] = len(emulator.messages())
    outcome["refused"] = emulator.status_counts.get(429, 0)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name, make in (("NullHandler", logging.NullHandler), ("HookHandler", None)):
        samples: list[float] = []
        for _ in range(args.repeats):
            handler = hook_handler(args.records) if make is None else make()
            samples += caller_cost(args.records, handler)
        p50, p99, worst = _percentiles(samples)
        print(
            f"{name:12} logger.error: p50 {p50 * 1e6:6.1f} us  p99 {p99 * 1e6:6.1f} us  "
            f"max {worst * 1e6:8.1f} us  ({len(samples)} calls)"
        )
    outcome = flood()
    print(
        f"flood: 500 records in 10 s at 60/hour -> {outcome['messages']:.0f} messages, "
        f"{outcome['refused']:.0f} refused, first after {outcome['first']:.2f} s, "
        f"all by {outcome['last']:.1f} s (virtual)"
    )


if __name__ == "__main__":
    main()
