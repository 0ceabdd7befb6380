"""``s3jedi demo``: the main job on the tiny embedded default, the whole system end to end.

1. build the tiny model zoo;
2. build a small S3 dataset (LLM subjects → collages → instances → consistency → backgrounds → styles);
3. train JeDi briefly on it with Ray Train and export the pipeline;
4. personalize real DreamBooth photos with the trained JeDi;
5. fine-tune the same subject with Textual Inversion (a Ray Train run), publish it to a subject
   store and draw with it;
6. score the JeDi model on the DreamBooth protocol (1 subject × 2 prompts × 2 samples), HTML report;
7. start the Ray Serve app and personalize the same photos over HTTP;
8. personalize a novel ToyWorld subject with the shipped ToyWorld JeDi checkpoints, read by the oracle.

Every step is the code a user runs on its own (``s3jedi datagen``, ``s3jedi train jedi``, ``s3jedi
eval``, ``s3jedi serve``, ``s3jedi toyworld demo``); the demo only chooses small sizes. The tiny
models are random, so steps 1-7 draw noise and prove the plumbing; step 8 uses the trained ToyWorld
checkpoints in ``assets/toyworld``, so it shows real personalization, checked by the world's oracle.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from core import zoo
from core.config import S3JediConfig, config_hash, save_config
from core.logs import get_logger
from core.progress import Progress

log = get_logger("demo")
PROMPTS = ["a photo of the subject on the beach", "a photo of the subject in the snow"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
EVAL_SUBJECT = "dog"  # a DreamBooth benchmark subject with photos in ../shared


def _photos(references: Path) -> list[Path]:
    photos = (
        sorted(p for p in references.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:3] if references.is_dir() else []
    )
    if not photos:
        raise FileNotFoundError(f"--references: no .jpg/.png images in {references}")
    return photos


def build_dataset(cfg: S3JediConfig, out_dir: Path) -> dict:
    from datagen.pipeline import build

    result = build(cfg, str(out_dir / "s3"))
    if not result.summary["sets"]:
        raise RuntimeError(f"the S3 build accepted no sets; see its rejects in {result.root}")
    return {"out": result.root, **{k: result.summary[k] for k in ("sets", "images", "acceptance_rate")}}


def train(cfg: S3JediConfig, out_dir: Path, dataset: str, steps: int) -> dict:
    from core.config.training import DataSource
    from training.jedi.recipe import fit

    train_cfg = cfg.model_copy(deep=True)
    t = train_cfg.train.jedi
    t.data.sources = [DataSource(kind="s3", path=dataset)]
    t.steps = steps
    t.run.checkpoint_every = steps
    t.run.log_every = max(1, steps // 2)
    t.run.storage_path = str(out_dir / "runs")
    t.run.name = "demo-jedi"
    t.scaling.cpus_per_worker = 0.5  # leave a CPU for Ray Data's decoding tasks on a 2-core machine
    outcome = fit(train_cfg)
    return {"export": outcome.export_dir, "loss": round(outcome.metrics["loss"], 4), "steps": outcome.metrics["step"]}


def personalize(cfg: S3JediConfig, references: Path, out_dir: Path) -> dict:
    import torch
    from PIL import Image

    refs = [Image.open(p) for p in _photos(references)]
    pipe = zoo.load("jedi", cfg.models.jedi, home=cfg.home)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        refs,
        PROMPTS,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    side = out.images[0].width
    grid = Image.new("RGB", (side * (len(refs) + len(out.images)), side))
    for i, img in enumerate([r.convert("RGB").resize((side, side)) for r in refs] + out.images):
        grid.paste(img, (side * i, 0))
    path = out_dir / "personalized.png"
    grid.save(path)
    return {"grid": str(path), "model": cfg.models.jedi}


def finetune_subject(cfg: S3JediConfig, out_dir: Path, references: Path, steps: int) -> dict:
    from training.finetune.runner import finetune
    from training.finetune.sample import sample_subject

    ft = cfg.model_copy(deep=True)
    ft.finetune.ti.train.steps = steps
    ft.finetune.run.storage_path = str(out_dir / "runs")
    ft.finetune.store = str(out_dir / "subjects")
    ft.finetune.scaling.cpus_per_worker = 0.5
    report = finetune(ft, ["ti"], str(references))
    if report.failed:
        raise RuntimeError(f"fine-tuning {report.failed[0].subject} failed: {report.failed[0].error}")
    outcome = report.outcomes[0]
    image = sample_subject(
        ft, outcome.subject_id, ["a photo of {0} {1} on the beach"], steps=4, guidance_scale=7.5, side=64, seed=cfg.seed
    )[0]
    path = out_dir / "finetuned.png"
    image.save(path)
    return {"subject_id": outcome.subject_id, "published": outcome.published, "image": str(path)}


def evaluate(cfg: S3JediConfig, out_dir: Path, subject: str, steps: int) -> dict:
    """JeDi against Textual Inversion (fine-tuned on the subject's benchmark photos in the run) on the
    DreamBooth protocol."""
    from cluster.eval_training import train_subjects
    from evaluation.job import run_evaluation

    ev = cfg.model_copy(deep=True)
    ev.evaluation.methods = ["jedi", "ti"]
    ev.evaluation.selection.subjects = [subject]
    ev.finetune.ti.train.steps = steps
    ev.finetune.scaling.cpus_per_worker = 0.5
    result = run_evaluation(ev, out_dir / "eval", train_subjects)
    protocol = result.summary["protocols"][0]
    overall = {r["method"]: r["metrics"] for r in protocol["rows"] if r["subject"] == "all"}
    return {
        "report": str(result.report),
        "images": result.planned,
        **{
            f"{method} {m}": round(metrics[m]["mean"], 4)
            for method, metrics in overall.items()
            for m in ("clip_t", "clip_i")
        },
        "ti first image s": round(result.summary["costs"]["ti"]["first_image_s"] or 0.0, 1),
    }


def serve(cfg: S3JediConfig, references: Path, out_dir: Path) -> dict:
    from serving.demo import run_serving_demo

    return run_serving_demo(cfg, references, out_dir)


def toyworld(cfg: S3JediConfig, out_dir: Path) -> dict:
    from evaluation.toyworld.demo import run_demo as toyworld_demo

    result = toyworld_demo(cfg, None, references=2, out=out_dir)
    return {k: result[k] for k in ("subject", "novel", "identity", "scene_accuracy", "grid")}


STEPS = (
    "zoo build",
    "S3 dataset build",
    "JeDi training",
    "personalize (trained JeDi)",
    "fine-tune (Textual Inversion)",
    "evaluate (JeDi vs Textual Inversion, DreamBooth protocol)",
    "serve (HTTP personalize)",
    "ToyWorld personalization (shipped checkpoints)",
)


def run_demo(cfg: S3JediConfig, out_dir: Path, references: Path, train_steps: int = 10) -> dict:
    _photos(references)  # fail before any work when the photos are missing
    for stale in ("s3", "runs", "eval", "subjects"):  # a demo starts fresh; rerunning a real job would resume it
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir)
    steps: dict[str, dict] = {}
    # In a terminal a bar shows the step running; each finished step is one log line either way.
    bar = Progress(total=len(STEPS), desc="demo", unit="step", log_lines=False)

    def step(name: str, fn: Callable[[], dict]) -> dict:
        start = time.perf_counter()
        bar.set_description(f"demo: {name}")
        result = fn()
        steps[name] = {**result, "seconds": round(time.perf_counter() - start, 2)}
        bar.update()
        log.info(f"demo {len(steps)}/{len(STEPS)}: {name}", seconds=steps[name]["seconds"])
        return result

    with bar:
        step(STEPS[0], lambda: {"built": [r.family for r in zoo.build("tiny", home=cfg.home) if r.status == "built"]})
        dataset = step(STEPS[1], lambda: build_dataset(cfg, out_dir))
        trained = step(STEPS[2], lambda: train(cfg, out_dir, dataset["out"], train_steps))
        cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"jedi": trained["export"]})})
        step(STEPS[3], lambda: personalize(cfg, references, out_dir))
        step(STEPS[4], lambda: finetune_subject(cfg, out_dir, references, max(2, train_steps // 2)))
        step(STEPS[5], lambda: evaluate(cfg, out_dir, EVAL_SUBJECT, max(2, train_steps // 2)))
        step(STEPS[6], lambda: serve(cfg, references, out_dir))
        step(STEPS[7], lambda: toyworld(cfg, out_dir))

    summary = {"profile": cfg.profile, "config_hash": config_hash(cfg), "out": str(out_dir), "steps": steps}
    (out_dir / "demo-summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def summary_lines(summary: dict) -> list[str]:
    """One line per step: its seconds and what it made (paths relative to the output directory);
    ``demo-summary.json`` has every number."""
    out = Path(summary["out"]).resolve()

    def show(value) -> str:
        if isinstance(value, list):
            return " ".join(map(show, value)) or "-"
        if isinstance(value, str) and value.startswith("/") and Path(value).resolve().is_relative_to(out):
            return str(Path(value).resolve().relative_to(out))
        return str(value)

    width = max(map(len, summary["steps"]))
    lines = [f"demo ({summary['profile']}, config {summary['config_hash']}) in {out}:"]
    for name, result in summary["steps"].items():
        facts = ", ".join(f"{k} {show(v)}" for k, v in result.items() if k != "seconds")
        lines.append(f"  {name:<{width}} {result['seconds']:7.1f} s  {facts}")
    return lines
