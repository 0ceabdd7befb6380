"""``s3jedi toyworld train``: the whole ToyWorld recipe, each step resumable, through the project's trainers.

1. **data** — the Ray Data job of ``core.toyworld.dataset`` (shards that exist are kept);
2. **base pipeline** — VAE fitted on renders + toy text encoder + random UNet, saved as a standard
   ``StableDiffusionPipeline`` directory (kept if present);
3. **base stage** — the JeDi trainer (Ray Train) with ``models.sd`` = that directory and a ``captions``
   source: sets of one, i.e. plain text-to-image training of the widened UNet (no reference is ever
   given to a single image, so the result is the base text-to-image model in JeDi format);
4. **JeDi stage** — the same trainer, ``train.jedi.init_from`` = the base stage's export, on the
   same-subject sets (``s3`` source);
5. **JeDi continued** — the same trainer from the JeDi stage's export with reference-channel dropout
   (a text-dropped set loses its clean-reference channel too, mask kept), so the ε⁰ of the pipeline's
   ``paper`` image guidance is an input the model was trained on;
6. **ship** — the base and the continued JeDi exports copied to ``toyworld.train.ship``
   (``assets/toyworld``: the checkpoints the README demo and ``s3jedi toyworld eval`` use by default).

A stage whose export already records its final step is skipped; an interrupted stage resumes from
its latest Ray Train checkpoint (the trainer restores runs by name). ``toyworld.train.start_from``
takes the base and JeDi stages from existing exports (``assets/toyworld`` continues the shipped
model) and runs only the continuation.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core import storage
from core.config import S3JediConfig, config_hash, save_config
from core.config.toyworld import ToyWorldStage
from core.logs import get_logger
from core.ray_runtime import init_ray
from core.toyworld.dataset import SINGLES_DIR, write_dataset
from training.jedi.recipe import EXPORT_META
from training.toyworld.base_model import build_base_pipeline

log = get_logger("toyworld.recipe")
BASE_RUN, JEDI_RUN, CONTINUED_RUN = "toyworld-base", "toyworld-jedi", "toyworld-jedi-continued"


@dataclass(frozen=True)
class Paths:
    out: Path

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def base_pipeline(self) -> Path:
        return self.out / "base-pipeline"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    def export(self, run: str) -> Path:
        return self.runs / run / "export"


def stage_config(
    cfg: S3JediConfig, stage: ToyWorldStage, run: str, sources: list[dict], paths: Paths, init_from: str | None
) -> S3JediConfig:
    """The root config with ``models.sd`` and ``train.jedi`` set for one stage (validated like any config)."""
    tw = cfg.toyworld
    raw = cfg.model_dump(mode="json")
    raw["models"]["sd"] = str(paths.base_pipeline)
    raw["train"]["jedi"] = {
        "steps": stage.steps,
        "sets_per_worker": stage.sets_per_worker,
        "ema_decay": stage.ema_decay,
        "p_reference": stage.p_reference,
        "p_text_drop": stage.p_text_drop,
        "p_reference_caption_drop": stage.p_reference_caption_drop,
        "p_reference_channel_drop": stage.p_reference_channel_drop,
        "max_set_size": tw.train.max_set_size,
        "init_from": init_from,
        "validation_steps": 10,
        "data": {
            "sources": sources,
            "resolution": tw.data.size,
            "min_set_size": tw.train.min_set_size,
            "max_set_size": tw.train.max_set_size,
            "min_crop_scale": 1.0,  # a crop could cut the body out of the image
            "flip": True,  # every shape is left-right symmetric
        },
        "optim": {"lr": stage.lr, "warmup_steps": stage.warmup_steps, "schedule": "cosine"},
        "scaling": {"num_workers": 1, "cpus_per_worker": tw.train.cpus_per_worker},
        "run": {
            "name": run,
            "storage_path": str(paths.runs),
            "checkpoint_every": stage.checkpoint_every,
            "log_every": 25,
        },
    }
    return S3JediConfig.model_validate(raw)


def _finished(export: Path, steps: int) -> bool:
    meta = export / EXPORT_META
    return meta.is_file() and json.loads(meta.read_text())["step"] == steps


def _run_stage(
    cfg: S3JediConfig, stage: ToyWorldStage, run: str, sources: list[dict], paths: Paths, init_from: str | None
) -> dict:
    from training.jedi.recipe import fit

    export = paths.export(run)
    if _finished(export, stage.steps):
        log.info("stage already finished", run=run, export=str(export))
        return {"run": run, "skipped": True}
    start = time.perf_counter()
    outcome = fit(stage_config(cfg, stage, run, sources, paths, init_from))
    return {"run": run, "seconds": round(time.perf_counter() - start, 1), "metrics": outcome.metrics}


def _ship(source: Path, dest: Path) -> None:
    """Copy an export with the UNet and VAE as float16 safetensors: half the size in git, and diffusers
    loads them back as float32 unless asked otherwise, so users see no difference (the report measures
    these weights). The text encoder stays float32: transformers honours the ``dtype`` its config
    records, so a float16 one would load as float16 and run slowly (and rounded) on a CPU."""
    import torch

    from core.jedi import JeDiPipeline

    staging = dest.parent / f".{dest.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    pipe = JeDiPipeline.from_pretrained(str(source), use_safetensors=True)
    pipe.unet.to(torch.float16)
    pipe.vae.to(torch.float16)
    pipe.save_pretrained(str(staging), safe_serialization=True)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)


def run_recipe(cfg: S3JediConfig) -> dict:
    tw = cfg.toyworld
    paths = Paths(storage.local_path(tw.train.out))
    paths.out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, paths.out)
    summary: dict = {"config_hash": config_hash(cfg), "out": str(paths.out)}
    start = time.perf_counter()
    init_ray(cfg.ray)

    summary["data"] = write_dataset(str(paths.data), tw.data, cfg.seed)
    sets = [{"kind": "s3", "path": str(paths.data)}]
    if tw.train.start_from:
        start_from = storage.local_path(tw.train.start_from)
        base_export, jedi_export = start_from / "base", start_from / "jedi"
        for export in (base_export, jedi_export):
            if not (export / "model_index.json").is_file():
                raise ValueError(f"toyworld.train.start_from: {export} is not a pipeline export")
        summary["start_from"] = str(start_from)
    else:
        if not (paths.base_pipeline / "model_index.json").is_file():
            t = time.perf_counter()
            threads = max(1, int(tw.train.cpus_per_worker))
            build_base_pipeline(tw.model, tw.data.size, cfg.seed, paths.base_pipeline, threads)
            summary["base_pipeline_seconds"] = round(time.perf_counter() - t, 1)
        singles = [{"kind": "captions", "path": str(paths.data / SINGLES_DIR)}]
        summary["base"] = _run_stage(cfg, tw.train.base, BASE_RUN, singles, paths, None)
        summary["jedi"] = _run_stage(cfg, tw.train.jedi, JEDI_RUN, sets, paths, str(paths.export(BASE_RUN)))
        base_export, jedi_export = paths.export(BASE_RUN), paths.export(JEDI_RUN)
    summary["jedi_continued"] = _run_stage(cfg, tw.train.jedi_continued, CONTINUED_RUN, sets, paths, str(jedi_export))

    if tw.train.ship:
        ship = storage.local_path(tw.train.ship)
        ship.mkdir(parents=True, exist_ok=True)
        if base_export.resolve() != (ship / "base").resolve():
            _ship(base_export, ship / "base")
        _ship(paths.export(CONTINUED_RUN), ship / "jedi")
        save_config(cfg, ship)
        summary["shipped"] = str(ship)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    (paths.out / "recipe-summary.json").write_text(json.dumps(summary, indent=1, default=str))
    log.info("toyworld recipe finished", seconds=summary["seconds"], out=str(paths.out))
    return summary
