"""Run benchmarks and record their results as JSON under ``benchmarks/results/``.

    python -m benchmarks.run              # every benchmark
    python -m benchmarks.run zoo          # only benchmarks/bench_zoo.py

Each ``bench_<name>.py`` exposes ``run() -> dict`` and prints its ratios; this runner writes the
dict with a record of the machine.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from benchmarks.common import write_result

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== {name}")
        result = importlib.import_module(f"benchmarks.bench_{name}").run()
        print(f"   -> {write_result(name, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
