"""Import time of ``hookapi`` against ``httpx``, each in fresh interpreters, best of N.

Uses ``python -X importtime``: the cumulative microseconds it reports for the top-level
module include everything that module imports (``hookapi``'s includes ``httpx``'s).

    python benchmarks/importtime.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def cumulative_us(module: str, *, python: str = sys.executable) -> int:
    """Microseconds ``import module`` took in a fresh interpreter, imports included."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in reversed(done.stderr.splitlines()):
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"python -X importtime printed no line for {module}.")


def best_of(runs: int, *modules: str) -> dict[str, float]:
    """The fastest import of each module in milliseconds, the runs interleaved."""
    best = dict.fromkeys(modules, float("inf"))
    for _ in range(runs):
        for module in modules:
            best[module] = min(best[module], cumulative_us(module) / 1000)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    json.dump(best_of(args.runs, "httpx", "hookapi"), sys.stdout)
    print()


if __name__ == "__main__":
    main()
