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
from dataclasses import dataclass
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


def timeit_interleaved(fns: dict[str, Callable[[], object]], repeat: int = 3, warmup: int = 1) -> dict[str, dict]:
    """``timeit`` for several functions run in turn (a, b, a, b, ...), so a shared machine's load drifting
    between repeats biases none of them; ``{name: {"median_s", "min_s", "repeat"}}``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(s), "min_s": min(s), "repeat": repeat} for name, s in samples.items()}


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


@dataclass(frozen=True)
class Target:
    """Where a benchmark runs and at what scale.

    On a CUDA GPU the plan is the production one: production architectures (the zoo's ``shape``
    models), half precision, production sizes. On a CPU the same code runs at reduced sizes so it
    never rots. ``rehearse`` (``S3JEDI_BENCH_REHEARSE=1`` on a CPU) runs the *GPU plan* — shape
    models, half precision, bf16 autocast — at CPU sizes: GPU time is scarce (a rented or shared host), so a GPU run
    finds code that has already run end to end, and only the sizes change.
    """

    device: str
    rehearse: bool = False

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"

    @property
    def production(self) -> bool:
        """Use the GPU plan (shape models, half precision)."""
        return self.gpu or self.rehearse

    @property
    def half(self):
        import torch

        return torch.float16 if self.production else None

    def pick(self, gpu, cpu):
        """``gpu`` on a GPU, else ``cpu``: sizes, steps, repeats (a rehearsal uses CPU sizes)."""
        return gpu if self.gpu else cpu

    def sync(self) -> None:
        import torch

        if self.gpu:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        import torch

        if self.gpu:
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float | None:
        import torch

        return torch.cuda.max_memory_allocated() / 2**30 if self.gpu else None


def target() -> Target:
    import torch

    if torch.cuda.is_available():
        return Target("cuda")
    return Target("cpu", rehearse=os.environ.get("S3JEDI_BENCH_REHEARSE") == "1")
