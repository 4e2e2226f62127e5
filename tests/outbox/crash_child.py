"""A process that forks outbox runs on demand, for the crash test to kill with SIGKILL.

Starting a fresh interpreter per run would cost more than the runs themselves, so this one
imports everything once and forks a child per line of standard input (a JSON object of
options). It prints the child's pid as soon as it runs, then its wait status when it ends.
Each child resumes the outbox stored in the given SQLite file and delivers it all, or exits
with :data:`IN_USE` when another process has the file open.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from typing import Any

import anyio
import trio  # noqa: F401  (imported before forking, so no child pays for it)

from hookapi import AsyncHookClient, Outbox, RetryPolicy, StoreInUseError
from hookapi._http import ConnectionPool  # noqa: F401  (the same: imported once)

#: The exit code of a child refused because another one has the file open.
IN_USE = 3


async def deliver(options: dict[str, Any]) -> None:
    client = AsyncHookClient.from_url(
        options["url"], retry=RetryPolicy(initial_delay=0.001, max_delay=0.01)
    )
    async with (
        client,
        Outbox(
            client,
            store=options["path"],
            delivery=options["delivery"],
            concurrency=options["concurrency"],
            drain_timeout=math.inf,
        ),
    ):
        pass


def main() -> None:
    for line in sys.stdin:
        options = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                anyio.run(deliver, options, backend=options["backend"])
            except StoreInUseError:
                code = IN_USE  # another child has the file: the parent starts this one again
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    main()
