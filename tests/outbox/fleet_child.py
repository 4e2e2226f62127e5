"""One process of a fleet sharing one hook's outbox through a RedisStore.

Run as ``python -m tests.outbox.fleet_child OPTIONS`` (a JSON object). It prints ``ready``
once its outbox runs, then waits for a line on standard input (``go``) unless
``options["wait"]`` is false. It puts ``count`` messages ``"NAME n"`` (``count`` < 0: until a
``stop`` line), printing ``put ID TEXT`` as each ``put`` returns (the message is acknowledged:
it is in Redis), or ``refused TEXT`` when Redis is away. Then it prints ``stopped``, and
leaves the outbox (which delivers its own messages first) when ``exit`` comes
(``options["exit"]``: at once). It prints ``lost`` each time its outbox stops delivering the
shared queue while the process lives on (its lease ran out during a pause, or Redis was away):
a lost deliverer, as a killed one is, whose message in flight may go twice or be reported.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any

import anyio

from hookapi import (
    AsyncHookClient,
    Outbox,
    QuotaPolicy,
    RedisQuota,
    RedisStore,
    RetryPolicy,
    StoreUnavailableError,
)
from hookapi.cli._stage import ScaledClock, ScaledTimeLoop


def say(line: str) -> None:
    print(line, flush=True)


class SayLost(logging.Handler):
    """Print ``lost`` when the outbox says it stops delivering the shared queue."""

    def emit(self, record: logging.LogRecord) -> None:
        if "stops delivering the shared queue" in record.getMessage():
            say("lost")


async def run(options: dict[str, Any]) -> None:
    scale = float(options.get("scale", 1.0))
    quota = None
    if options.get("quota") == "redis":
        quota = RedisQuota(
            options["redis"],
            prefix=options["prefix"] + "quota:",
            lease=2.5 * scale,
            policy=QuotaPolicy(),
            _time_scale=scale,
        )
    retry = RetryPolicy(initial_delay=0.001 * scale, max_delay=0.05 * scale, deadline=math.inf)
    client = AsyncHookClient.from_url(options["url"], quota=quota, retry=retry, timeout=1.0 * scale)
    store = RedisStore(
        options["redis"],
        prefix=options["prefix"],
        lease=options["lease"] * scale,
        poll_interval=options["poll"] * scale,
        timeout=1.0,
        _time_scale=scale,
    )
    lines, incoming = anyio.create_memory_object_stream[str](16)

    async def read_stdin() -> None:
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                return
            await lines.send(line.strip())

    async with anyio.create_task_group() as group:
        group.start_soon(read_stdin)
        async with client:
            outbox = Outbox(
                client,
                store=store,
                delivery=options.get("delivery", "at_least_once"),
                concurrency=int(options.get("concurrency", 1)),
                drain_timeout=math.inf,
            )
            async with outbox:
                say("ready")
                if options.get("wait", True):
                    assert await incoming.receive() == "go"
                stop = anyio.Event()

                async def watch() -> None:
                    while (await incoming.receive()) != "stop":
                        pass
                    stop.set()

                group.start_soon(watch)
                count = int(options["count"])
                gap = float(options.get("gap", 0.0)) * scale
                n = 0
                while (count < 0 or n < count) and not stop.is_set():
                    text = f"{options['name']} {n}"
                    n += 1
                    try:
                        receipt = await outbox.put(text)
                    except StoreUnavailableError:
                        say(f"refused {text}")  # not accepted: Redis is away
                    else:
                        say(f"put {receipt.id} {text}")
                    await anyio.sleep(gap)
                say("stopped")
                if not options.get("exit", False):
                    if not stop.is_set():
                        await stop.wait()
                    while (await incoming.receive()) != "exit":
                        pass
            if quota is not None:
                await quota.aclose()
        say("done")
        group.cancel_scope.cancel()


def main() -> None:
    options = json.loads(sys.argv[1])
    logging.getLogger("hookapi").addHandler(SayLost(logging.WARNING))
    scale = float(options.get("scale", 1.0))
    anyio.run(
        run,
        options,
        backend_options={"loop_factory": lambda: ScaledTimeLoop(ScaledClock(scale))},
    )
    # The thread reading standard input may still be blocked in it: end without waiting.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
