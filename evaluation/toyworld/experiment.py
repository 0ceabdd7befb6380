"""``s3jedi toyworld eval``: does JeDi transfer a novel subject's identity from its references?

For every condition (see ``conditions``) and every trial (novel subject × seed) one image is generated
and read by the oracle: *identity* = shape and colour both right, *scene accuracy* = the prompt's
scene drawn. The loss gap (``loss_gap``) is measured per trial for each reference count and with
coupling off. The fine-tuning rows (``toyworld.eval.finetune_methods``) fine-tune every novel subject
once per method, through a ``finetuner`` the caller passes (see ``finetuned``), and draw it per trial.
Every number is a mean over trials with a percentile-bootstrap interval (``evaluation.statistics``)
and its trial count; the trial is the resampling unit, subjects and seeds both vary across trials.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from core import storage, zoo
from core.config import S3JediConfig
from core.jedi.plain import plain_pipeline
from core.logs import get_logger
from core.progress import Progress
from core.threads import torch_threads
from core.toyworld.oracle import read
from core.toyworld.world import COLOURS, SHAPES
from evaluation.statistics import bootstrap_mean
from evaluation.toyworld.conditions import Condition, conditions, generate, generate_finetuned, generate_plain
from evaluation.toyworld.finetuned import FinetunedSubjects, Finetuner
from evaluation.toyworld.loss_gap import eval_timesteps, loss_gaps, target_losses
from evaluation.toyworld.trials import Trial, make_trials

log = get_logger("toyworld.eval")
CHANCE = {"identity": 1 / (len(SHAPES) * len(COLOURS)), "shape": 1 / len(SHAPES), "colour": 1 / len(COLOURS)}
METRICS = ("identity", "scene", "shape", "colour")


@dataclass
class Row:
    condition: Condition
    metrics: dict[str, dict] = field(default_factory=dict)
    """metric → Estimate as a dict (mean, lo, hi, n)."""


@dataclass
class ExperimentResult:
    rows: list[Row]
    records: list[dict]
    """One per generated image: condition, trial, oracle reading, scores."""
    images: dict[str, list[np.ndarray]]
    trials: list[Trial]
    size: int
    losses: dict[str, float]
    """Mean target loss per loss setting (right / decoy references, coupled or not, alone)."""
    best_lambda: str
    seconds: float
    finetune: dict = field(default_factory=dict)
    """The fine-tuning rows' settings: prompts, training scenes, seconds per method (empty without them)."""

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.condition.key == key)


def score(image: np.ndarray, trial: Trial) -> dict:
    reading = read(image)
    return {
        "identity": float(reading.is_subject(trial.subject)),
        "scene": float(reading.scene == trial.target_scene),
        "shape": float(reading.shape == trial.subject.shape),
        "colour": float(reading.colour == trial.subject.colour),
        "read_shape": reading.shape,
        "read_colour": reading.colour,
        "read_scene": reading.scene,
    }


def load_pipeline(ref: str, home=None):
    """A JeDi pipeline; a relative directory is taken from the working directory, and the shipped
    checkpoints (``assets/toyworld``) from the installation when it has none (``core.storage``)."""
    local = storage.local_path(ref)
    return zoo.load("jedi", str(local) if local.exists() else ref, home=home)


def pipeline_size(pipe) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def finetune_summary(cfg: S3JediConfig, finetuned: FinetunedSubjects, trials: list[Trial]) -> dict:
    """What the report says about the fine-tuning rows: an example prompt per method, the training
    scenes, the time each method took, and how many trials asked for a scene the subject was trained in."""
    scene = trials[0].target_scene
    seen = [t.target_scene in finetuned.scenes[t.subject.slug] for t in trials]
    return {
        "prompts": {m: finetuned.prompt(m, scene) for m in cfg.toyworld.eval.finetune_methods},
        "training_scenes": finetuned.scenes,
        "seconds": finetuned.seconds,
        "trials_in_training_scene": int(sum(seen)),
    }


def run_experiment(cfg: S3JediConfig, finetuner: Finetuner | None = None) -> ExperimentResult:
    """Every condition on every trial; ``finetuner`` fine-tunes the subjects of the fine-tuning rows
    (required when ``toyworld.eval.finetune_methods`` names any). Runs with ``toyworld.eval.threads``
    torch threads (the fine-tuning runs are Ray workers with their own)."""
    with torch_threads(cfg.toyworld.eval.threads):
        return _run_experiment(cfg, finetuner)


def _run_experiment(cfg: S3JediConfig, finetuner: Finetuner | None) -> ExperimentResult:
    ev = cfg.toyworld.eval
    if ev.finetune_methods and finetuner is None:
        raise ValueError(
            "toyworld.eval.finetune_methods: the fine-tuning rows need the fine-tuning methods (run "
            "`s3jedi toyworld eval`), or set it to []"
        )
    start = time.perf_counter()
    pipes = {"jedi": load_pipeline(ev.jedi, cfg.home), "base": load_pipeline(ev.base, cfg.home)}
    size = pipeline_size(pipes["jedi"])
    if pipeline_size(pipes["base"]) != size:
        raise ValueError(
            f"toyworld.eval.base: draws {pipeline_size(pipes['base'])} px images, the JeDi model {size} px"
        )
    refs = sorted(set(ev.references))
    if refs[-1] > pipes["jedi"].max_references:
        raise ValueError(f"toyworld.eval.references: {refs[-1]} exceeds the model's {pipes['jedi'].max_references}")
    trials = make_trials(cfg.seed, ev.trials, refs[-1], size, ev.subjects)
    finetuned, summary = None, {}
    if ev.finetune_methods:
        pipes["plain"] = plain_pipeline(pipes["base"])
        finetuned = finetuner(cfg, list(dict.fromkeys(t.subject for t in trials)), size)
        summary = finetune_summary(cfg, finetuned, trials)

    rows, records, images = [], [], {}
    for cond in Progress(conditions(ev), desc="conditions", unit="condition"):
        t = time.perf_counter()
        if cond.model == "finetuned":
            images[cond.key] = generate_finetuned(finetuned, trials, cond, ev)
        elif cond.model == "plain":
            images[cond.key] = generate_plain(pipes["plain"], trials, size, ev)
        else:
            images[cond.key] = generate(pipes[cond.model], trials, cond, size, ev)
        scored = [score(im, tr) for im, tr in zip(images[cond.key], trials, strict=True)]
        records += [
            {
                "condition": cond.key,
                "trial": tr.id,
                "subject": tr.subject.name,
                "target_scene": tr.target_scene,
                **({"in_training_scene": tr.target_scene in finetuned.scenes[tr.subject.slug]} if finetuned else {}),
                **s,
            }
            for tr, s in zip(trials, scored, strict=True)
        ]
        row = Row(cond)
        for m in METRICS:
            row.metrics[m] = asdict(bootstrap_mean([s[m] for s in scored], ev.resamples, ev.confidence, cfg.seed))
        rows.append(row)
        log.info(
            "condition done",
            condition=cond.key,
            identity=round(row.metrics["identity"]["mean"], 3),
            scene=round(row.metrics["scene"]["mean"], 3),
            seconds=round(time.perf_counter() - t, 1),
        )

    timesteps = eval_timesteps(pipes["jedi"].scheduler.config.num_train_timesteps, ev.loss_timesteps)
    losses = {"alone": float(target_losses(pipes["jedi"], trials, 0, size, timesteps).mean())}
    for row in rows:
        cond = row.condition
        if not cond.loss_gap:
            continue
        right = target_losses(pipes["jedi"], trials, cond.k, size, timesteps, coupled=cond.coupled)
        wrong = target_losses(pipes["jedi"], trials, cond.k, size, timesteps, decoy=True, coupled=cond.coupled)
        losses[f"{cond.key}/right"], losses[f"{cond.key}/decoy"] = float(right.mean()), float(wrong.mean())
        row.metrics["loss_gap"] = asdict(bootstrap_mean(loss_gaps(right, wrong), ev.resamples, ev.confidence, cfg.seed))

    k2 = [r for r in rows if r.condition.model == "jedi" and r.condition.coupled and r.condition.k == 2]
    best = max(k2 or rows[1:2], key=lambda r: (r.metrics["identity"]["mean"], r.metrics["scene"]["mean"]))
    return ExperimentResult(
        rows, records, images, trials, size, losses, best.condition.key, round(time.perf_counter() - start, 1), summary
    )
