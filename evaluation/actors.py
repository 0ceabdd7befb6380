"""The two Ray Data actor pools of a benchmark run: generation, then scoring.

Each actor loads its models once and is then called on batches of cases (numpy column dicts).
Generated images travel to the scorers and to the driver as PNG bytes, so no stage needs a disk
shared with the others. Rows of a batch may belong to different methods and subjects; both actors
work group by group within the batch. Cases arrive sorted by method, so a generation actor holds one
method's models at a time and swaps them when the next method's cases start.
"""

from __future__ import annotations

import io
import json
import time
from collections import defaultdict

import numpy as np
from PIL import Image

from core.config import S3JediConfig
from core.logs import get_logger
from core.metrics.suite import ReferenceFeatures
from evaluation.generators import Generator, SubjectInput, make_generator
from evaluation.scoring import build_suite, conflict_flags

log = get_logger("evaluation.actors")


def _groups(*columns: np.ndarray) -> dict[tuple[str, ...], list[int]]:
    """Row indices by the values of ``columns`` (in order of first appearance)."""
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(*columns, strict=True)):
        groups[tuple(str(k) for k in key)].append(i)
    return groups


def _device(gpus: float) -> str:
    return "cuda" if gpus > 0 else "cpu"


class GenerateBatch:
    """Generation actor: adds ``prompt``, ``inputs`` (comma-separated names of the photos the generator
    conditioned on), ``image_png`` and ``generation_s`` (seconds per image of its call, the method's
    inference step included) to each case.

    ``store``: where the run fine-tuned its subjects (the fine-tuning methods' generators draw from it)."""

    def __init__(self, cfg: S3JediConfig, subjects: dict[str, SubjectInput], store: str | None):
        self.cfg, self.subjects, self.store = cfg, subjects, store
        self.device = _device(cfg.evaluation.compute.gpus_per_generator)
        self.generator: Generator | None = None

    def generator_of(self, method: str) -> Generator:
        if self.generator is None or self.generator.method != method:
            self.generator = None  # the previous method's models go before the next one's load
            self.generator = make_generator(self.cfg, method, self.device, self.store)
        return self.generator

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        prompts, inputs, pngs, seconds = [""] * n, [""] * n, [b""] * n, np.zeros(n)
        for (method, name), rows in _groups(batch["method"], batch["subject"]).items():
            generator, subject = self.generator_of(method), self.subjects[name]
            templates = [str(batch["template"][i]) for i in rows]
            group_prompts = [generator.prompt(subject, t) for t in templates]
            generator.load(subject)
            start = time.perf_counter()
            images = generator.generate(subject, templates, [int(batch["seed"][i]) for i in rows])
            per_image = (time.perf_counter() - start) / len(rows)
            used = ",".join(generator.inputs(subject))
            for i, prompt, image in zip(rows, group_prompts, images, strict=True):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                prompts[i], inputs[i], pngs[i], seconds[i] = prompt, used, buffer.getvalue(), per_image
        return {
            **batch,
            "prompt": np.array(prompts, dtype=object),
            "inputs": np.array(inputs, dtype=object),
            "image_png": np.array(pngs, dtype=object),
            "generation_s": seconds,
        }


class ScoreBatch:
    """Scoring actor: adds every metric of the suite to each case, and ``scorers``: the loaded
    backbones' exact description (the driver records it once in run.json and drops the column).

    A subject's photos are embedded on first use and kept for the actor's lifetime. The hard
    negatives of an image are the other prompts of its subject's full list (not only the selected
    ones), so the score does not depend on how many prompts a run evaluates.
    """

    def __init__(self, cfg: S3JediConfig, subjects: dict[str, SubjectInput], prompt_lists: dict[str, list[str]]):
        self.cfg = cfg
        self.suite = build_suite(cfg, _device(cfg.evaluation.compute.gpus_per_scorer))
        self.subjects = subjects
        self.prompt_lists = prompt_lists
        self._references: dict[str, ReferenceFeatures] = {}
        self.description = json.dumps(self.suite.describe(), default=str)

    def references(self, name: str) -> ReferenceFeatures:
        if name not in self._references:
            subject = self.subjects[name]
            refs = self.suite.references(subject.images(), subject.class_name)
            if self.suite.detects_masks and refs.masks_found == 0:
                log.warning("no subject mask in any reference photo; masked scores are NaN", subject=name)
            self._references[name] = refs
        return self._references[name]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        columns: dict[str, np.ndarray] = {}
        for (name,), rows in _groups(batch["subject"]).items():
            images = [Image.open(io.BytesIO(batch["image_png"][i])) for i in rows]
            prompts = [str(batch["eval_prompt"][i]) for i in rows]
            negatives = [[p for p in self.prompt_lists[name] if p != prompt] for prompt in prompts]
            scores = self.suite.score(images, prompts, self.references(name), negatives)
            scores |= conflict_flags(self.cfg, scores)
            for metric, values in scores.items():
                if metric not in columns:
                    columns[metric] = np.zeros(n, dtype=values.dtype)
                columns[metric][rows] = values
        return {**batch, **columns, "scorers": np.array([self.description] * n, dtype=object)}
