"""What a run measured, as one JSON-able tree: per protocol, every method's means with intervals
(overall and per subject) and its paired difference from the reference method; per method, its costs.

Costs (per method):

- ``finetune_s``: mean wall seconds to fine-tune one subject (its Ray Train run, start-up included;
  0 for the finetuning-free methods; None when the subjects came from a store and were not timed here);
- ``finetune_gpu_s``: the same × the GPUs the run held (0 on CPU workers);
- ``s_per_image``: mean seconds per image of the generation calls, the method's inference step
  (CoRe's test-time optimization) included, model loading not;
- ``first_image_s``: ``finetune_s + s_per_image``, how long a new subject waits for its first image.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from core.config import S3JediConfig
from core.config.evaluation import PROTOCOLS
from evaluation.generators import FINETUNING_FREE
from evaluation.protocols import protocol_rows
from evaluation.statistics import compare, summarize


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def costs(frame: pd.DataFrame, methods: list[str], finetuning: dict[tuple[str, str], dict]) -> dict[str, dict]:
    out = {}
    for method in methods:
        rows = frame[frame["method"] == method]
        per_image = float(rows["generation_s"].mean()) if len(rows) else None
        if method in FINETUNING_FREE:
            tuned, gpu = 0.0, 0.0
        else:
            done = [o for (m, _), o in finetuning.items() if m == method and o["status"] == "done"]
            tuned = _mean(o["seconds"] for o in done)
            gpu = _mean(o["gpu_seconds"] for o in done)
        first = tuned + per_image if tuned is not None and per_image is not None else None
        out[method] = {"finetune_s": tuned, "finetune_gpu_s": gpu, "s_per_image": per_image, "first_image_s": first}
    return out


def summarize_run(
    cfg: S3JediConfig, frame: pd.DataFrame, methods: list[str], finetuning: dict[tuple[str, str], dict]
) -> dict:
    """The whole summary of a run's scored images (``frame``: one row per image, every method)."""
    ev, rep = cfg.evaluation, cfg.evaluation.report
    reference = ev.reference_method
    protocols = []
    for name in ev.protocols:
        spec = PROTOCOLS[name]
        rows = protocol_rows(frame, name, ev.selection)
        differences = {}
        base = rows[rows["method"] == reference]
        for method in methods:
            if method == reference or base.empty:
                continue
            found = compare(base, rows[rows["method"] == method], rep.bootstrap, rep.confidence, cfg.seed, spec.metrics)
            differences[method] = {d.metric: {**asdict(d.diff), "paired": d.paired} for d in found}
        protocols.append(
            {
                "name": name,
                **spec.model_dump(mode="json", include={"label", "source", "metrics", "labels", "identity_excluded"}),
                "rows": summarize(rows, rep.bootstrap, rep.confidence, cfg.seed) if len(rows) else [],
                "differences": differences,
            }
        )
    return {
        "methods": methods,
        "reference": reference,
        "confidence": rep.confidence,
        "protocols": protocols,
        "costs": costs(frame, methods, finetuning),
        "finetuning": sorted(finetuning.values(), key=lambda o: (o["method"], o["subject"])),
    }
