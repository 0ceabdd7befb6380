"""``s3jedi toyworld eval``: does JeDi transfer a novel subject's identity from its references?

For every condition (see ``conditions``) and every trial (novel subject × seed) one image (or, for
the joint-target rows, one per target) is generated and read by the oracle: *identity* = shape and
colour both right on a readable image (the abstaining oracle; the always-answering verdict is kept
beside it), *scene accuracy* = the prompt's scene drawn. The loss gap (``loss_gap``) is measured per
trial for each reference count and with coupling off. The fine-tuning rows
(``toyworld.eval.finetune_methods``) fine-tune every novel subject once per method, through a
``finetuner`` the caller passes (see ``finetuned``), and draw it per trial. Every number is a mean
over trials with a percentile-bootstrap interval (``evaluation.statistics``) and its trial count; the
trial is the resampling unit, subjects and seeds both vary across trials. Conditions share their
trials, so differences between rows are measured in pairs (per-trial differences, bootstrapped).

``toyworld.eval.split`` picks the seeds: settings are chosen on ``validation`` and reported on ``eval``.
"""

from __future__ import annotations

import itertools
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
from evaluation.toyworld.conditions import (
    Condition,
    conditions,
    default_k,
    generate,
    generate_finetuned,
    generate_plain,
)
from evaluation.toyworld.finetuned import FinetunedSubjects, Finetuner
from evaluation.toyworld.loss_gap import eval_timesteps, loss_gaps, target_losses
from evaluation.toyworld.trials import Trial, make_trials

log = get_logger("toyworld.eval")
CHANCE = {"identity": 1 / (len(SHAPES) * len(COLOURS)), "shape": 1 / len(SHAPES), "colour": 1 / len(COLOURS)}
METRICS = ("identity", "identity_always", "readable", "scene", "shape", "colour")
"""Per image: identity under the abstaining oracle, under the always-answering one, whether the
oracle could read the body, scene, and the always-answering shape and colour."""
PAIRED = ("identity", "scene")


@dataclass
class Row:
    condition: Condition
    metrics: dict[str, dict] = field(default_factory=dict)
    """metric → Estimate as a dict (mean, lo, hi, n)."""
    per_trial: dict[str, list[float]] = field(default_factory=dict)
    """metric → per-trial mean (over the trial's images), in trial order: what pairs are made of."""
    seconds_per_image: float = float("nan")


@dataclass
class ExperimentResult:
    rows: list[Row]
    records: list[dict]
    """One per generated image: condition, trial, image, oracle reading, scores."""
    images: dict[str, list[np.ndarray]]
    trials: list[Trial]
    size: int
    losses: dict[str, float]
    """Mean target loss per loss setting (right / decoy references, coupled or not, alone)."""
    comparisons: list[dict]
    """Paired differences between rows: ``{"a", "b", "metric", "estimate"}`` (a − b per trial)."""
    split: str
    seconds: float
    finetune: dict = field(default_factory=dict)
    """The fine-tuning rows' settings: prompts, training scenes, seconds per method (empty without them)."""

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.condition.key == key)

    def has(self, key: str) -> bool:
        return any(r.condition.key == key for r in self.rows)


def score(image: np.ndarray, trial: Trial, scene: str | None = None) -> dict:
    """The oracle's verdict on one image of ``trial`` drawn in ``scene`` (default: the trial's target scene)."""
    reading = read(image)
    return {
        "identity": float(reading.is_subject(trial.subject)),
        "identity_always": float(reading.is_subject(trial.subject, abstain=False)),
        "readable": float(reading.readable),
        "scene": float(reading.scene == (scene or trial.target_scene)),
        "shape": float(reading.shape == trial.subject.shape),
        "colour": float(reading.colour == trial.subject.colour),
        "read_shape": reading.shape,
        "read_colour": reading.colour,
        "read_scene": reading.scene,
    }


def pairs(rows: list[Row], k2: int, references: list[int]) -> list[tuple[str, str]]:
    """The row pairs compared trial by trial: each extra reference at the defaults, every swept
    setting against the defaults, joint against separate targets."""
    keys = {r.condition.key for r in rows}
    ks = sorted(set(references))
    out = [(f"jedi-k{b}", f"jedi-k{a}") for a, b in itertools.pairwise(ks)]
    default = f"jedi-k{k2}"
    out += [
        (r.condition.key, default)
        for r in rows
        if r.condition.model == "jedi"
        and r.condition.k == k2
        and r.condition.coupled
        and r.condition.images == 1
        and r.condition.key != default
    ]
    out.append((f"{default}-joint", f"{default}-separate"))
    return [(a, b) for a, b in out if a in keys and b in keys]


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
    trials = make_trials(cfg.seed, ev.trials, refs[-1], size, ev.subjects, ev.split)
    finetuned, summary = None, {}
    if ev.finetune_methods:
        pipes["plain"] = plain_pipeline(pipes["base"])
        finetuned = finetuner(cfg, list(dict.fromkeys(t.subject for t in trials)), size)
        summary = finetune_summary(cfg, finetuned, trials)

    rows, records, images = [], [], {}
    for cond in Progress(conditions(ev, pipes["jedi"].spec.max_set_size), desc="conditions", unit="condition"):
        t = time.perf_counter()
        if cond.model == "finetuned":
            images[cond.key] = generate_finetuned(finetuned, trials, cond, ev)
        elif cond.model == "plain":
            images[cond.key] = generate_plain(pipes["plain"], trials, size, ev)
        else:
            images[cond.key] = generate(pipes[cond.model], trials, cond, size, ev)
        seconds = time.perf_counter() - t
        drawn = [(tr, j, scene) for tr in trials for j, scene in enumerate(tr.scenes(cond.k, cond.images))]
        scored = [score(im, tr, scene) for im, (tr, _, scene) in zip(images[cond.key], drawn, strict=True)]
        records += [
            {
                "condition": cond.key,
                "trial": tr.id,
                "image": j,
                "subject": tr.subject.name,
                "target_scene": scene,
                **({"in_training_scene": scene in finetuned.scenes[tr.subject.slug]} if finetuned else {}),
                **s,
            }
            for (tr, j, scene), s in zip(drawn, scored, strict=True)
        ]
        row = Row(cond, seconds_per_image=seconds / len(drawn))
        for m in METRICS:
            per_image = np.array([s[m] for s in scored]).reshape(len(trials), cond.images)
            row.per_trial[m] = per_image.mean(axis=1).tolist()
            row.metrics[m] = asdict(bootstrap_mean(row.per_trial[m], ev.resamples, ev.confidence, cfg.seed))
        rows.append(row)
        log.info(
            "condition done",
            condition=cond.key,
            identity=round(row.metrics["identity"]["mean"], 3),
            scene=round(row.metrics["scene"]["mean"], 3),
            seconds=round(seconds, 1),
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

    by_key = {r.condition.key: r for r in rows}
    comparisons = [
        {
            "a": a,
            "b": b,
            "metric": m,
            "estimate": asdict(
                bootstrap_mean(
                    np.subtract(by_key[a].per_trial[m], by_key[b].per_trial[m]), ev.resamples, ev.confidence, cfg.seed
                )
            ),
        }
        for a, b in pairs(rows, default_k(ev), ev.references)
        for m in PAIRED
    ]
    return ExperimentResult(
        rows,
        records,
        images,
        trials,
        size,
        losses,
        comparisons,
        ev.split,
        round(time.perf_counter() - start, 1),
        summary,
    )
