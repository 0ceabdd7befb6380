"""Mining: the teachers draw every prompt's samples and the scorers score them, in one Ray Data job.

Two actor pools, as in the class-images job and the evaluation run: ``TeacherSampler`` holds a
teacher pipeline (the base model with the teacher subject applied, loaded from the subject store like
any fine-tuned subject) and draws one image per row; ``GoldScorer`` holds the metric suite (CLIP,
NegCLIP, DINO, detector + segmenter for the masked scores) and each subject's reference features.
Images travel as PNG bytes, so no stage needs a shared disk; the driver receives the scored rows and
writes them.

Rows are sorted by subject, so an actor rarely switches teachers. Sample i of prompt p is drawn with
its own CPU generator seeded from (seed, subject, round, p, i): a sample depends on nothing else.
Every row carries the seconds its actor spent on it (``generation_s``, ``scoring_s``: the call's time
divided by its rows, model loading included) — the per-subject phase times of the report.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image

from core import zoo
from core.config import S3JediConfig
from core.metrics.loading import load_suite
from core.metrics.suite import ReferenceFeatures
from core.paths import s3jedi_home
from core.progress import Progress
from core.subject_pipeline import store_location
from core.subjects import SubjectCard, SubjectStore, apply_subject, read_card
from training.selfdistill.prompts import MinedPrompt


@dataclass(frozen=True)
class MiningPlan:
    """One subject's mining in one round."""

    subject: str
    class_word: str
    round: int
    teacher: str  # subject id in the store
    prompts: list[MinedPrompt]
    photos: list[bytes]  # the subject's own photos (encoded), the references of the image score


def sample_seed(seed: int, subject: str, round_: int, prompt_id: int, sample: int) -> int:
    digest = hashlib.sha256(f"{seed}:mining:{subject}:{round_}:{prompt_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _groups(values: np.ndarray) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, value in enumerate(values):
        groups[str(value)].append(i)
    return groups


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class TeacherSampler:
    """Generation actor: adds ``image`` (PNG bytes) and ``generation_s`` to each row."""

    def __init__(self, config: dict):
        import torch

        self.cfg = S3JediConfig.model_validate(config)
        self.device = "cuda" if self.cfg.selfdistill.mining.gpus_per_generator > 0 else "cpu"
        self.dtype = torch.float16 if self.device == "cuda" else None
        home = self.cfg.home or s3jedi_home()
        self.store = SubjectStore(store_location(self.cfg), cache_dir=home / "cache" / "subjects")
        self.teacher: str | None = None
        self.card: SubjectCard | None = None
        self.pipe = None

    def _load(self, teacher: str) -> None:
        if teacher == self.teacher:
            return
        where = self.store.local_dir(teacher)
        card = read_card(where)
        base = zoo.load("sd", card.base_model, home=self.cfg.home, device=self.device, dtype=self.dtype)
        self.pipe = apply_subject(base, where)
        self.pipe.set_progress_bar_config(disable=True)
        self.teacher, self.card = teacher, card

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        m, side = self.cfg.selfdistill.mining, self.cfg.finetune.resolution
        n = len(batch["teacher"])
        pngs = [b""] * n
        start = time.perf_counter()
        for teacher, rows in _groups(batch["teacher"]).items():
            self._load(teacher)
            images = self.pipe(
                [self.card.render_prompt(str(batch["template"][i])) for i in rows],
                num_inference_steps=m.steps,
                guidance_scale=m.guidance_scale,
                height=side,
                width=side,
                generator=[torch.Generator(self.device).manual_seed(int(batch["seed"][i])) for i in rows],
            ).images
            for i, image in zip(rows, images, strict=True):
                pngs[i] = _png(image)
        seconds = (time.perf_counter() - start) / n
        return {**batch, "image": np.array(pngs, dtype=object), "generation_s": np.full(n, seconds)}


class GoldScorer:
    """Scoring actor: adds every metric of the suite and ``scoring_s`` to each row.

    ``subjects``: name → ``{"class_word", "photos" (encoded bytes), "texts" (token-free prompts by
    prompt id)}``. A sample's hard negatives are its subject's other mining prompts."""

    def __init__(self, config: dict, subjects: dict[str, dict]):
        cfg = S3JediConfig.model_validate(config)
        m = cfg.selfdistill.mining
        device = "cuda" if m.gpus_per_scorer > 0 else "cpu"
        self.suite = load_suite(cfg.selfdistill.scoring, cfg.models, cfg.home, device, m.encoder_batch)
        self.subjects = subjects
        self._references: dict[str, ReferenceFeatures] = {}

    def references(self, name: str) -> ReferenceFeatures:
        if name not in self._references:
            info = self.subjects[name]
            photos = [Image.open(io.BytesIO(blob)).convert("RGB") for blob in info["photos"]]
            self._references[name] = self.suite.references(photos, info["class_word"])
        return self._references[name]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["subject"])
        columns: dict[str, np.ndarray] = {}
        start = time.perf_counter()
        for name, rows in _groups(batch["subject"]).items():
            texts = self.subjects[name]["texts"]
            ids = [int(batch["prompt_id"][i]) for i in rows]
            negatives = [[t for j, t in enumerate(texts) if j != pid] for pid in ids]
            images = [Image.open(io.BytesIO(batch["image"][i])) for i in rows]
            scores = self.suite.score(images, [texts[pid] for pid in ids], self.references(name), negatives)
            for metric, values in scores.items():
                if metric not in columns:
                    columns[metric] = np.zeros(n, dtype=values.dtype)
                columns[metric][rows] = values
        seconds = (time.perf_counter() - start) / n
        return {**batch, **columns, "scoring_s": np.full(n, seconds)}


def mining_rows(cfg: S3JediConfig, plans: list[MiningPlan]) -> list[dict]:
    rows = []
    for plan in sorted(plans, key=lambda p: p.subject):
        for prompt in plan.prompts:
            for sample in range(cfg.selfdistill.mining.images_per_prompt):
                rows.append(
                    {
                        "subject": plan.subject,
                        "round": plan.round,
                        "teacher": plan.teacher,
                        "prompt_id": prompt.prompt_id,
                        "sample": sample,
                        "seed": sample_seed(cfg.seed, plan.subject, plan.round, prompt.prompt_id, sample),
                        "template": prompt.template,
                        "text": prompt.text,
                    }
                )
    return rows


def mine(cfg: S3JediConfig, plans: list[MiningPlan]) -> dict[str, pa.Table]:
    """Draw and score every plan's samples; returns subject → its rows (images, scores, timings)."""
    import ray.data
    from ray.data import ActorPoolStrategy

    m = cfg.selfdistill.mining
    rows = mining_rows(cfg, plans)
    if not rows:
        return {}
    subjects = {
        p.subject: {"class_word": p.class_word, "photos": p.photos, "texts": [q.text for q in p.prompts]} for p in plans
    }
    config = cfg.model_dump(mode="json")
    ds = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / m.generation_batch))
    ds = ds.map_batches(
        TeacherSampler,
        fn_constructor_kwargs={"config": config},
        batch_size=m.generation_batch,
        compute=ActorPoolStrategy(size=m.generation_actors),
        num_cpus=m.cpus_per_actor,
        num_gpus=m.gpus_per_generator,
    )
    ds = ds.map_batches(
        GoldScorer,
        fn_constructor_kwargs={"config": config, "subjects": subjects},
        batch_size=m.scoring_batch,
        compute=ActorPoolStrategy(size=m.scoring_actors),
        num_cpus=m.cpus_per_actor,
        num_gpus=m.gpus_per_scorer,
    )
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    with Progress(total=len(rows), desc="mine (draw + score)", unit="img") as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            table = pa.table({k: pa.array(list(v)) for k, v in batch.items()})
            for name, rows_of in _groups(batch["subject"]).items():
                parts[name].append(table.take(rows_of))
            bar.update(table.num_rows)
    return {
        name: pa.concat_tables(tables).sort_by([("prompt_id", "ascending"), ("sample", "ascending")])
        for name, tables in parts.items()
    }
