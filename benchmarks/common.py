"""What every benchmark shares: timing with warm-up, a machine record, and JSON results.

These machines are noisy, so every benchmark reports a *ratio* against a baseline measured in the
same run, next to the absolute numbers.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median and min seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "repeat": repeat}


def machine() -> dict[str, object]:
    import torch

    info: dict[str, object] = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    payload = {"benchmark": name, "time": stamp, "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path
