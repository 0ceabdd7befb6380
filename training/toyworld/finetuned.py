"""The fine-tuning rows of the ToyWorld experiment: DreamBooth, TI, two-stage and CoRe on the toy base.

- **Base.** The recipe's base stage is a JeDi-format pipeline; the fine-tuning methods train a stock
  Stable Diffusion pipeline, so the base is converted (``core.jedi.plain``) into the work directory
  and becomes ``models.sd``.
- **Data.** Each novel subject gets ``toyworld.eval.finetune_images`` renders, each in its own scene
  and layout, drawn from the subject's own generator (``item_rng``). They are captioned in the world's
  grammar with the method's template where the world puts the subject: ``a sks thing on the sea``
  (DreamBooth, ``a {0} {1}``), ``a <sks> on the sea`` (TI, ``a {0}``). The scene must be named per
  image, so that the identifier learns the subject and not the backgrounds it was shown on; the
  runner gives a subject's photos one shared prompt, so the renders also go in as *extra instances*
  with their own captions, drawn at every step (``extra_share = 1``). The subject folder holds the
  same renders (what the runner validates and what a reader of the run sees).
- **Training.** ``training.finetune.runner.finetune``, once per method (the captions depend on the
  method's template), every subject of a method concurrently (``finetune.concurrency``).
- **Sampling.** The subject contract (``core.subject_pipeline``: with the method's inference step,
  e.g. CoRe's test-time optimization), one image per request with the request's own seed.

The work directory is keyed by a hash of everything that decides the subjects, so rerunning the
experiment with the same settings reuses the finished runs, and changed settings train afresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from core import storage, zoo
from core.config import S3JediConfig
from core.jedi.plain import plain_pipeline
from core.logs import get_logger
from core.methods import method_plan
from core.s3 import encode_image, write_table
from core.subject_pipeline import SubjectPipeline, locate
from core.toyworld.dataset import item_rng
from core.toyworld.render import random_layout, render
from core.toyworld.world import GENERIC_WORD, SCENES, Subject
from training.finetune.runner import finetune

log = get_logger("toyworld.finetune")
BASE_DIR = "base"


def scene_caption(template: str, scene: str) -> str:
    """The world's caption ``a <what> on the <scene>`` with a method's template as ``a <what>``."""
    return f"{template} on the {scene}"


def training_renders(seed: int, subject: Subject, count: int, size: int) -> list[tuple[str, np.ndarray]]:
    """``count`` renders of ``subject``, each in its own scene and layout: (scene, image) pairs."""
    if not 1 <= count <= len(SCENES):
        raise ValueError(f"toyworld.eval.finetune_images: must lie in [1, {len(SCENES)}], got {count}")
    rng = item_rng(seed, f"finetune/{subject.slug}", 0)
    scenes = [list(SCENES)[j] for j in rng.permutation(len(SCENES))[:count]]
    return [(scene, render(subject, scene, random_layout(rng, size), size)[0]) for scene in scenes]


def write_subject_data(cfg: S3JediConfig, subjects: list[Subject], size: int, root: Path) -> dict:
    """Per subject: a folder of renders, and per method a Parquet of the same renders with their captions.

    Returns ``{"subjects": dir, "scenes": {slug: [scene, ...]}, "extras": {method: {slug: parquet}}}``."""
    ev = cfg.toyworld.eval
    scenes_of, extras = {}, {m: {} for m in ev.finetune_methods}
    for subject in subjects:
        renders = training_renders(cfg.seed, subject, ev.finetune_images, size)
        scenes = [scene for scene, _ in renders]
        folder = root / "subjects" / subject.slug
        folder.mkdir(parents=True, exist_ok=True)
        for i, (scene, image) in enumerate(renders):
            Image.fromarray(image).save(folder / f"{i:02d}-{scene}.png")
        blobs = [encode_image(Image.fromarray(image)) for _, image in renders]
        scenes_of[subject.slug] = scenes
        for method in ev.finetune_methods:
            template = method_plan(ev.finetune, method).prompt_template
            table = pa.table({"image": blobs, "prompt": [scene_caption(template, s) for s in scenes]})
            extras[method][subject.slug] = write_table(table, str(root / "extras" / method / f"{subject.slug}.parquet"))
    return {"subjects": str(root / "subjects"), "scenes": scenes_of, "extras": extras}


def work_dir(cfg: S3JediConfig, subjects: list[Subject]) -> Path:
    """``<toyworld.eval.out>/finetune/<key>``: the key hashes what decides the fine-tuned subjects."""
    ev = cfg.toyworld.eval
    decisive = {
        "base": ev.base,
        "finetune": ev.finetune.model_dump(mode="json"),
        "methods": ev.finetune_methods,
        "images": ev.finetune_images,
        "subjects": [s.slug for s in subjects],
        "seed": cfg.seed,
    }
    key = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:12]
    return storage.local_path(ev.out) / "finetune" / key


def finetune_config(cfg: S3JediConfig, work: Path, subjects: list[Subject]) -> S3JediConfig:
    """``cfg`` with ``finetune`` = ``toyworld.eval.finetune`` living in ``work`` and ``models.sd`` = the
    converted base; every subject's class word is the world's generic word."""
    ft = cfg.toyworld.eval.finetune.model_copy(
        update={
            "store": str(work / "store"),
            "class_words": {s.slug: GENERIC_WORD for s in subjects},
            "run": cfg.toyworld.eval.finetune.run.model_copy(update={"storage_path": str(work / "runs")}),
        }
    )
    models = cfg.models.model_copy(update={"sd": str(work / BASE_DIR)})
    return S3JediConfig.model_validate(
        {**cfg.model_dump(mode="json"), "finetune": ft.model_dump(mode="json"), "models": models.model_dump()}
    )


def write_plain_base(cfg: S3JediConfig, out: Path) -> Path:
    """The experiment's base model (JeDi format) as a plain SD pipeline directory; written beside ``out``
    and renamed, so an interrupted conversion never leaves a half-written base to be reused."""
    local = storage.local_path(cfg.toyworld.eval.base)
    pipe = zoo.load("jedi", str(local) if local.exists() else cfg.toyworld.eval.base, home=cfg.home)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    plain_pipeline(pipe).save_pretrained(str(partial), safe_serialization=True)
    partial.rename(out)
    return out


@dataclass
class FinetunedSubjects:
    """The novel subjects fine-tuned with each method, and how to draw them."""

    cfg: S3JediConfig
    """The fine-tuning config (``finetune`` and ``models.sd`` as trained)."""
    ids: dict[str, dict[str, str]]
    """method → subject slug → subject id in the store."""
    scenes: dict[str, list[str]]
    """subject slug → the scenes of its training renders."""
    seconds: dict[str, float] = field(default_factory=dict)
    """method → wall time of its fine-tuning (all subjects)."""
    failed: dict[str, str] = field(default_factory=dict)
    """subject id → why it failed."""

    def prompt(self, method: str, scene: str) -> str:
        """The prompt that asks for the subject in ``scene`` (``{0}``/``{1}`` placeholders)."""
        return scene_caption(method_plan(self.cfg.finetune, method).prompt_template, scene)

    def sample(
        self, method: str, subject: Subject, scenes: list[str], seeds: list[int], *, steps: int, guidance_scale: float
    ) -> list[np.ndarray]:
        """One ``side``×``side``×3 uint8 image per (scene, seed) of ``subject`` fine-tuned by ``method``."""
        subject_id = self.ids[method][subject.slug]
        if subject_id in self.failed:
            raise RuntimeError(f"fine-tuning {subject_id} failed: {self.failed[subject_id]}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        loaded = SubjectPipeline.load(locate(self.cfg, subject_id), home=self.cfg.home, device=device)
        drawing = loaded.draw(
            [self.prompt(method, s) for s in scenes],
            seeds,
            settings=self.cfg.finetune,
            steps=steps,
            guidance_scale=guidance_scale,
            height=self.cfg.finetune.resolution,
        )
        return [np.asarray(im.convert("RGB")) for im in drawing.images]


def finetune_subjects(cfg: S3JediConfig, subjects: list[Subject], size: int) -> FinetunedSubjects:
    """Convert the base, render the training data, and fine-tune every subject with every method of
    ``toyworld.eval.finetune_methods`` (finished runs of the same settings are reused)."""
    ev = cfg.toyworld.eval
    if ev.finetune.resolution != size:
        raise ValueError(
            f"toyworld.eval.finetune.resolution: {ev.finetune.resolution} px, the experiment's models draw {size} px"
        )
    work = work_dir(cfg, subjects)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / BASE_DIR).is_dir():
        write_plain_base(cfg, work / BASE_DIR)
    data = write_subject_data(cfg, subjects, size, work / "data")
    ftcfg = finetune_config(cfg, work, subjects)
    result = FinetunedSubjects(ftcfg, {}, data["scenes"])
    for method in ev.finetune_methods:
        start = time.perf_counter()
        report = finetune(ftcfg, [method], data["subjects"], data["extras"][method], extra_share=1.0)
        result.seconds[method] = round(time.perf_counter() - start, 1)
        result.ids[method] = {o.subject: o.subject_id for o in report.outcomes}
        result.failed.update({o.subject_id: o.error or o.status for o in report.failed})
        log.info("fine-tuned", method=method, subjects=len(report.outcomes), seconds=result.seconds[method])
    return result
