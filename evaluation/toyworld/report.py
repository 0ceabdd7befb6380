"""The ToyWorld report: Markdown and HTML from one list of blocks, plus grids, per-image records and JSON.

Files written into the report directory::

    report.md, report.html   targets, the main table, losses, what the failures drew, grids
    results.json             every estimate (mean, lo, hi, n) per condition, losses, settings
    records.csv              one row per generated image: condition, trial, oracle reading, scores
    grids/<subject>.png      per novel subject: references, the answer, each condition's samples
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from core.config import S3JediConfig
from evaluation.document import to_html, to_markdown
from evaluation.method_table import Column, MethodRow, comparison_blocks
from evaluation.statistics import compare
from evaluation.toyworld.experiment import CHANCE, ExperimentResult, Row

IDENTITY_TARGET = 0.9

SCALE = 4
LABEL_PX = 260


def _pct(est: dict) -> str:
    if not est or not est["n"]:
        return "–"
    return f"{100 * est['mean']:+.1f}% [{100 * est['lo']:+.1f}, {100 * est['hi']:+.1f}]"


def _frac(est: dict) -> str:
    if not est or not est["n"]:
        return "–"
    return f"{est['mean']:.3f} [{est['lo']:.3f}, {est['hi']:.3f}]"


def _holds(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _signed(est: dict) -> str:
    if not est or not est["n"]:
        return "–"
    return f"{est['mean']:+.3f} [{est['lo']:+.3f}, {est['hi']:+.3f}]"


def _difference(result: ExperimentResult, a: str, b: str, metric: str = "identity") -> dict | None:
    return next((c["estimate"] for c in result.comparisons if (c["a"], c["b"], c["metric"]) == (a, b, metric)), None)


def targets(result: ExperimentResult) -> list[list[str]]:
    """The issue's targets at the default settings, each with what was measured and whether it holds."""
    out = []
    k2 = result.row("jedi-k2") if result.has("jedi-k2") else None
    if k2 is not None and "loss_gap" in k2.metrics:
        gap = k2.metrics["loss_gap"]
        out.append(["loss gap (JeDi, 2 references) ≥ 20%", _pct(gap), _holds(gap["mean"] >= 0.2)])
    if k2 is not None:
        idt, scene = k2.metrics["identity"], k2.metrics["scene"]
        out.append(
            [
                f"identity ≥ {IDENTITY_TARGET} (abstaining oracle) and scene accuracy ≥ 0.9 ({k2.condition.label})",
                f"{idt['mean']:.3f} / {scene['mean']:.3f}",
                _holds(idt["mean"] >= IDENTITY_TARGET and scene["mean"] >= 0.9),
            ]
        )
    more = _difference(result, "jedi-k3", "jedi-k2")
    if more is not None:
        out.append(
            [
                "3 references at least as good as 2 (paired identity difference ≥ 0)",
                _signed(more),
                _holds(more["mean"] >= 0),
            ]
        )
    for key in ("floor", "jedi-k2-uncoupled"):
        if not result.has(key):
            continue
        idt = result.row(key).metrics["identity"]
        out.append(
            [
                f"{result.row(key).condition.label}: identity at chance ({CHANCE['identity']:.3f}), i.e. the "
                "interval's lower end ≤ chance",
                _frac(idt),
                _holds(idt["lo"] <= CHANCE["identity"]),
            ]
        )
    return out


def main_table(result: ExperimentResult) -> list[list[str]]:
    rows = []
    for row in result.rows:
        m = row.metrics
        rows.append(
            [
                row.condition.label,
                _pct(m.get("loss_gap")),
                _frac(m["identity"]),
                _frac(m["identity_always"]),
                f"{1 - m['readable']['mean']:.3f}",
                _frac(m["scene"]),
                _frac(m["shape"]),
                _frac(m["colour"]),
                f"{1000 * row.seconds_per_image:.0f}",
                str(m["identity"]["n"]),
            ]
        )
    return rows


MAIN_HEADER = [
    "method",
    "loss gap (wrong-ref / right-ref − 1)",
    "identity (abstaining oracle)",
    "identity (always answers)",
    "unreadable",
    "scene accuracy",
    "shape",
    "colour",
    "ms / image",
    "trials",
]


def comparison_table(result: ExperimentResult) -> list[list[str]]:
    """Paired differences (row a − row b, trial by trial) in identity and scene accuracy."""
    labels = {r.condition.key: r.condition.label for r in result.rows}
    out = []
    for c in result.comparisons:
        if c["metric"] != "identity":
            continue
        scene = _difference(result, c["a"], c["b"], "scene")
        out.append([labels[c["a"]], labels[c["b"]], _signed(c["estimate"]), _signed(scene), str(c["estimate"]["n"])])
    return out


def finetune_table(result: ExperimentResult) -> list[list[str]]:
    """Per fine-tuning method: its prompt, its training time, and its scores on the trials whose scene
    none of the subject's training renders showed (the fair comparison with JeDi, whose target scene
    is never a reference scene)."""
    out = []
    for row in result.rows:
        method = row.condition.method
        if method is None:
            continue
        unseen = [
            r for r in result.records if r["condition"] == row.condition.key and not r.get("in_training_scene", False)
        ]
        out.append(
            [
                row.condition.label,
                f"`{result.finetune['prompts'][method]}`",
                f"{result.finetune['seconds'][method]:.0f}",
                *(f"{np.mean([r[key] for r in unseen]):.3f}" if unseen else "–" for key in ("identity", "scene")),
                str(len(unseen)),
            ]
        )
    return out


COMPARED = [
    Column("identity", "identity (oracle)"),
    Column("scene", "scene accuracy"),
    Column("shape", "shape"),
    Column("colour", "colour"),
]
"""The method comparison's columns: ToyWorld's oracle readings in place of the benchmark's scores."""


def method_rows(cfg: S3JediConfig, result: ExperimentResult) -> tuple[list[MethodRow], str]:
    """The method comparison (the report code the DreamBooth benchmark uses): the floor, JeDi with 2
    references (the reference row), and each fine-tuning method, differences paired over trials."""
    ev = cfg.toyworld.eval
    reference = "jedi-k2" if any(r.condition.key == "jedi-k2" for r in result.rows) else result.best_lambda
    frame = pd.DataFrame.from_records(result.records)
    by_key = {key: group for key, group in frame.groupby("condition")}
    metrics = [c.key for c in COMPARED]
    subjects = len({t.subject for t in result.trials})
    rows = []
    for row in result.rows:
        cond = row.condition
        if cond.key not in ("floor", reference) and cond.method is None:
            continue
        difference = None
        if cond.key != reference:
            found = compare(
                by_key[reference], by_key[cond.key], ev.resamples, ev.confidence, cfg.seed, metrics, key="trial"
            )
            difference = {d.metric: asdict(d.diff) for d in found}
        tuned = result.finetune["seconds"][cond.method] / subjects if cond.method else 0.0
        cost = {"finetune_s": tuned, "finetune_gpu_s": None, "s_per_image": None, "first_image_s": None}
        rows.append(MethodRow(cond.key, cond.label, row.metrics, row.metrics["identity"]["n"], cost, difference))
    return rows, reference


def failure_table(result: ExperimentResult, row: Row) -> list[list[str]]:
    """What the oracle read where ``row`` missed the identity: the investigation's first clue."""
    misses = [r for r in result.records if r["condition"] == row.condition.key and not r["identity"]]
    counts = Counter(
        (r["subject"], f"{r['read_colour']} {r['read_shape']}" + ("" if r["readable"] else " (unreadable)"))
        for r in misses
    )
    return [[subject, drawn, str(n)] for (subject, drawn), n in counts.most_common(12)]


def _label_font():
    return ImageFont.load_default(size=12)


def _drawable(label: str) -> str:
    """Pillow's default font has no Greek or arrows: spell them out rather than draw boxes."""
    return label.replace("λ", "lambda").replace("→", "->")


def subject_grid(result: ExperimentResult, subject_slug: str) -> Image.Image:
    """Columns = the subject's trials; rows = its references, the answer, then each condition's (first) sample."""
    trials = [t for t in result.trials if t.subject.slug == subject_slug]
    index = {t.id: i for i, t in enumerate(result.trials)}
    k = len(trials[0].ref_scenes)
    rows: list[tuple[str, list[np.ndarray]]] = [
        (
            f"reference {j + 1} ({', '.join(t.ref_scenes[j] for t in trials)})",
            [np.asarray(t.references(j + 1, result.size)[j]) for t in trials],
        )
        for j in range(k)
    ]
    rows.append(("answer: the subject in the prompt's scene", [np.asarray(t.target(result.size)) for t in trials]))
    rows += [
        (row.condition.label, [result.images[row.condition.key][index[t.id] * row.condition.images] for t in trials])
        for row in result.rows
    ]
    side = result.size * SCALE
    grid = Image.new("RGB", (LABEL_PX + len(trials) * (side + 2), len(rows) * (side + 2)), (255, 255, 255))
    draw, font = ImageDraw.Draw(grid), _label_font()
    for r, (label, images) in enumerate(rows):
        draw.multiline_text((4, r * (side + 2) + 4), _wrap(_drawable(label), 36), fill=(20, 20, 20), font=font)
        for c, image in enumerate(images):
            thumb = Image.fromarray(image).resize((side, side), Image.Resampling.NEAREST)
            grid.paste(thumb, (LABEL_PX + c * (side + 2), r * (side + 2)))
    return grid


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _blocks(cfg: S3JediConfig, result: ExperimentResult, grids: list[str]) -> list[tuple]:
    ev = cfg.toyworld.eval
    default = result.row("jedi-k2") if result.has("jedi-k2") else result.rows[1]
    n_subjects = len({t.subject for t in result.trials})
    blocks: list[tuple] = [
        ("h", 1, "ToyWorld: personalization on novel subjects"),
        (
            "p",
            f"JeDi model `{ev.jedi}`, base model `{ev.base}`; {len(result.trials)} trials = {n_subjects} novel "
            f"subjects × {ev.trials} seeds of the {result.split} split; {result.size} px; {ev.steps} DDIM "
            f"steps; JeDi defaults: {ev.guidance} guidance, λ = {ev.image_guidance_scale:g}; text guidance s = "
            f"{ev.guidance_scale:g} for the decomposed rows, floors and fine-tuning rows; loss gap over "
            f"{ev.loss_timesteps} timesteps with fixed noise. Prompts name only the scene and a generic word "
            f"(`{result.trials[0].prompt}`). Identity is read by the abstaining oracle (an unreadable image is a "
            "miss); the always-answering oracle's identity is beside it. Intervals: "
            f"{ev.confidence:.0%} percentile bootstrap over trials ({ev.resamples} resamples); differences "
            f"between rows are paired by trial. Chance: identity {CHANCE['identity']:.3f}, shape "
            f"{CHANCE['shape']:.3f}, colour {CHANCE['colour']:.3f}. Took {result.seconds:.0f} s.",
        ),
        ("h", 2, "Targets"),
        ("table", ["expectation", "measured", "holds"], targets(result)),
        ("h", 2, "Results"),
        ("table", MAIN_HEADER, main_table(result)),
        (
            "p",
            "Guidance rows share the 2-reference loss gap (guidance changes sampling, not the model's "
            "prediction). Joint-target rows draw each trial's prompt scene and a scene no reference shows; "
            "their scores average the two images. ms / image is wall time per generated image on this machine.",
        ),
        ("h", 2, "Paired differences"),
        (
            "table",
            ["row a", "row b", "identity a − b", "scene a − b", "trials"],
            comparison_table(result) or [["–", "–", "–", "–", "0"]],
        ),
        *_comparison_blocks(cfg, result),
        *_finetune_blocks(cfg, result),
        ("h", 2, "Mean target losses"),
        ("table", ["setting", "MSE"], [[k, f"{v:.5f}"] for k, v in result.losses.items()]),
        ("h", 2, f"What {default.condition.label} drew when identity was wrong"),
        ("table", ["subject", "oracle read", "images"], failure_table(result, default) or [["–", "no misses", "0"]]),
        ("h", 2, "Grids"),
    ]
    blocks += [("img", g, g) for g in grids]
    return blocks


def _comparison_blocks(cfg: S3JediConfig, result: ExperimentResult) -> list[tuple]:
    rows, reference = method_rows(cfg, result)
    if len(rows) < 3:  # no fine-tuning method: the results table says it all
        return []
    return [
        ("h", 2, "Method comparison"),
        (
            "p",
            "Shaped like the DreamBooth benchmark's method table (the same report code): the oracle's identity "
            "and scene accuracy in place of CLIP and DINO; fine-tuning seconds per novel subject.",
        ),
        *comparison_blocks(rows, COMPARED, reference, cfg.toyworld.eval.confidence, unit="trials"),
    ]


def _finetune_blocks(cfg: S3JediConfig, result: ExperimentResult) -> list[tuple]:
    if not result.finetune:
        return []
    ev = cfg.toyworld.eval
    return [
        ("h", 2, "Fine-tuning rows"),
        (
            "p",
            f"Each method fine-tunes every novel subject on {ev.finetune_images} renders (each in its own scene, "
            "captioned in the world's words with the method's identifier), starting from the base model converted "
            "to a plain Stable Diffusion pipeline (the constant mask channel folded into the input convolution's "
            "bias; its own floor is the row above them), then draws it in each trial's target scene with the "
            f"trial's seed. {result.finetune['trials_in_training_scene']} of {len(result.trials)} trials ask for a "
            "scene among the subject's training renders; the columns below score only the others.",
        ),
        (
            "table",
            ["method", "prompt", "fine-tuning s (all subjects)", "identity, unseen scenes", "scene, unseen", "trials"],
            finetune_table(result),
        ),
    ]


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def write_report(cfg: S3JediConfig, result: ExperimentResult, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "grids").mkdir(exist_ok=True)
    grids = []
    for slug in dict.fromkeys(t.subject.slug for t in result.trials):
        subject_grid(result, slug).save(out / "grids" / f"{slug}.png")
        grids.append(f"grids/{slug}.png")
    blocks = _blocks(cfg, result, grids)
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, "ToyWorld report"))
    pd.DataFrame.from_records(result.records).to_csv(out / "records.csv", index=False)
    payload = {
        "settings": cfg.toyworld.eval.model_dump(),
        "seed": cfg.seed,
        "size": result.size,
        "trials": len(result.trials),
        "split": result.split,
        "chance": CHANCE,
        "losses": result.losses,
        "seconds": result.seconds,
        "finetune": result.finetune,
        "rows": [
            {
                "key": r.condition.key,
                "label": r.condition.label,
                "metrics": _json_safe(r.metrics),
                "seconds_per_image": r.seconds_per_image,
            }
            for r in result.rows
        ],
        "comparisons": result.comparisons,
        "targets": targets(result),
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    return out / "report.md"
