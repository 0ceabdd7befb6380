"""The report of a run: ``report.html`` (self-contained, relative links to the grids), ``report.md``
and ``report.json``, from one list of blocks (``evaluation.document``).

Per protocol, a table shaped like its paper's (method rows, the paper's scores with confidence
intervals, the cost columns) and the paired differences from the reference method
(``evaluation.method_table``), the scores per subject, and the papers' published numbers beside them,
marked as such. Then the fine-tuning outcomes, what each metric measures, the image grids, every
method's settings and the scoring backbones. A run scored (or drawn) with the project's tiny random
models says so at the top.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from core.methods import METHODS
from evaluation.document import to_html, to_markdown
from evaluation.method_table import Column, MethodRow, comparison_blocks, estimate_cell, seconds_cell
from evaluation.metric_info import ALL, METRICS
from evaluation.protocols import label as metric_label
from evaluation.published import published_for

TINY = "tiny"


def method_label(method: str) -> str:
    """How a report names a method: the registry's label, JeDi and the base model by their roles."""
    if method == "jedi":
        return "JeDi"
    if method == "base":
        return "base model (no personalization)"
    return METHODS[method].label if method in METHODS else method


def _num(value, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _value(value, nested: bool = False) -> str:
    """A readable value: a mapping as ``key: value`` parts (``key=value`` inside another), lists joined."""
    if isinstance(value, dict):
        parts = [f"{k}{'=' if nested else ': '}{_value(v, True)}" for k, v in value.items()]
        return ", ".join(parts) if nested else "; ".join(parts)
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v, True) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _tiny_banner(info: dict) -> list[tuple]:
    """A warning when any scoring backbone or a generator's model is one of the project's tiny random models."""
    backbones = info.get("fingerprint", {}).get("scoring", {}).get("backbones", {})
    tiny = [
        f"generator of {m}"
        for m, g in info["generators"].items()
        if TINY in (g.get("model"), g.get("training", {}).get("base_model"))
    ]
    tiny += [role for role, ref in backbones.items() if ref == TINY]
    if not tiny:
        return []
    return [
        (
            "banner",
            f"Tiny random models ({', '.join(tiny)}): the project's randomly initialised stand-ins, which make the "
            "whole job run on a CPU. These numbers check the mechanics only and say nothing about image quality; "
            "evaluate with a production profile (e.g. `-c sd14`) for meaningful values.",
        )
    ]


def _rows(summary: dict, protocol: dict) -> list[MethodRow]:
    overall = {r["method"]: r for r in protocol["rows"] if r["subject"] == ALL}
    return [
        MethodRow(
            method,
            method_label(method),
            overall[method]["metrics"],
            overall[method]["images"],
            summary["costs"][method],
            protocol["differences"].get(method),
        )
        for method in summary["methods"]
        if method in overall
    ]


def _columns(protocol: dict) -> list[Column]:
    return [Column(m, metric_label(protocol["name"], m), METRICS[m].higher_is_better) for m in protocol["metrics"]]


def _published_blocks(protocol: dict) -> list[tuple]:
    blocks = []
    for pub in published_for(protocol["name"]):
        metrics = [m for m in protocol["metrics"] if any(m in a.values for a in pub.rows)]
        blocks += [
            ("h", 3, f"Published, not measured here: {pub.base_model}"),
            ("p", f"{pub.source}. Comparable with this run only with the same base model, scorers and full protocol."),
            (
                "table",
                [
                    "method (as published)",
                    *(metric_label(protocol["name"], m) for m in metrics),
                    "this system's method",
                ],
                [
                    [a.label, *(_num(a.values.get(m)) for m in metrics), method_label(a.method) if a.method else "–"]
                    for a in pub.rows
                ],
            ),
        ]
    return blocks


def _protocol_blocks(summary: dict, protocol: dict) -> list[tuple]:
    columns = _columns(protocol)
    blocks: list[tuple] = [
        ("h", 2, f"Protocol {protocol['name']}: {protocol['label']}"),
        ("p", f"Source: {protocol['source']}."),
    ]
    if not protocol["rows"]:
        return [*blocks, ("p", "No image of this run belongs to the protocol.")]
    if protocol["identity_excluded"]:
        blocks.append(
            (
                "p",
                "Identity scores leave out the prompts matching "
                + ", ".join(f"`{p}`" for p in protocol["identity_excluded"])
                + ".",
            )
        )
    blocks += comparison_blocks(_rows(summary, protocol), columns, summary["reference"], summary["confidence"])
    per_subject = [r for r in protocol["rows"] if r["subject"] != ALL]
    blocks += [
        ("h", 3, "Per subject"),
        (
            "table",
            ["method", "subject", *(c.heading for c in columns), "images"],
            [
                [
                    method_label(r["method"]),
                    r["subject"],
                    *(estimate_cell(r["metrics"].get(c.key)) for c in columns),
                    str(r["images"]),
                ]
                for r in per_subject
            ],
        ),
        *_published_blocks(protocol),
    ]
    return blocks


def _every_score(summary: dict) -> list[tuple]:
    """Every score the run measured, per method, over the first protocol's images."""
    protocol = summary["protocols"][0]
    overall = [r for r in protocol["rows"] if r["subject"] == ALL]
    if not overall:
        return []
    shown = [m for m in METRICS if m in overall[0]["metrics"]]
    return [
        ("h", 2, f"Every score (protocol {protocol['name']})"),
        (
            "table",
            ["method", *(f"{METRICS[m].label} {METRICS[m].arrow}" for m in shown)],
            [[method_label(r["method"]), *(estimate_cell(r["metrics"][m]) for m in shown)] for r in overall],
        ),
        (
            "table",
            ["metric", "measures", "better"],
            [
                [
                    f"{METRICS[m].label} {METRICS[m].arrow}",
                    METRICS[m].definition,
                    "higher" if METRICS[m].higher_is_better else "lower",
                ]
                for m in shown
            ],
        ),
    ]


def _finetuning(summary: dict) -> list[tuple]:
    if not summary["finetuning"]:
        return []
    return [
        ("h", 2, "Fine-tuning"),
        ("p", "One Ray Train run per (method, subject); a failed one is left out of the tables, the others go on."),
        (
            "table",
            ["method", "subject", "status", "subject id", "seconds", "GPU-seconds", "error"],
            [
                [
                    method_label(o["method"]),
                    o["subject"],
                    o["status"] if o["status"] == "done" else f"**{o['status']}**",
                    o["subject_id"],
                    seconds_cell(o["seconds"]),
                    seconds_cell(o["gpu_seconds"]),
                    o["error"] or "",
                ]
                for o in summary["finetuning"]
            ],
        ),
    ]


def _settings(info: dict) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Methods and their settings")]
    for method, settings in info["generators"].items():
        blocks += [
            ("h", 3, method_label(method)),
            ("table", ["setting", "value"], [[k.replace("_", " "), _value(v)] for k, v in settings.items()]),
        ]
    return blocks


def _backbones(info: dict) -> list[tuple]:
    """One row per scoring role: the config's reference, what was loaded, and how images are prepared."""
    refs = info.get("fingerprint", {}).get("scoring", {}).get("backbones", {})
    rows = []
    for role, desc in info.get("scorers", {}).items():
        if not isinstance(desc, dict):
            rows.append([role, "", _value(desc)])
            continue
        loaded = str(desc.get("model", ""))
        model = f"{refs[role]} (loaded: {loaded})" if role in refs else loaded
        rows.append([role, model, _value({k: v for k, v in desc.items() if k != "model"})])
    return [("h", 2, "Backbones and preprocessing"), ("table", ["role", "model", "settings"], rows)]


def blocks(info: dict, summary: dict, grids: dict[str, str]) -> list[tuple]:
    methods = ", ".join(method_label(m) for m in summary["methods"])
    run_rows = [
        ["methods", methods],
        ["reference", method_label(summary["reference"])],
        ["benchmark", str(info["benchmark"])],
        ["subjects", ", ".join(info.get("subjects", []))],
        ["config hash", info["config_hash"]],
        ["finished", str(info.get("finished", ""))],
    ]
    if info.get("skipped_photos"):  # --skip-bad-photos left these out of the run
        run_rows.append(["skipped photos", "; ".join(f"{p['file']}: {p['reason']}" for p in info["skipped_photos"])])
    out: list[tuple] = [
        ("h", 1, f"DreamBooth benchmark: {methods}"),
        *_tiny_banner(info),
        ("table", ["run", ""], run_rows),
    ]
    for protocol in summary["protocols"]:
        out += _protocol_blocks(summary, protocol)
    out += _finetuning(summary)
    out += _every_score(summary)
    out += [
        ("h", 2, "Images"),
        ("p", "Per subject: its photos, then one row per method on the same prompts and seeds."),
    ]
    out += [("img", src, f"photos and generated images of {subject}") for subject, src in grids.items()]
    return out + _settings(info) + _backbones(info)


def write_report(run_dir: Path, info: dict, summary: dict, grids: dict[str, str]) -> Path:
    """``info``: run.json's content plus ``scorers``; ``grids``: subject → path relative to ``run_dir``."""
    parts = blocks(info, summary, grids)
    title = f"s3jedi evaluation: {', '.join(summary['methods'])}"
    (run_dir / "report.md").write_text(to_markdown(parts))
    payload = {
        "run": {k: info.get(k) for k in ("benchmark", "subjects", "config_hash", "fingerprint_hash", "finished")},
        "summary": summary,
        "published": [asdict(p) for q in summary["protocols"] for p in published_for(q["name"])],
        "grids": grids,
    }
    (run_dir / "report.json").write_text(json.dumps(_strict(payload), indent=1) + "\n")
    path = run_dir / "report.html"
    path.write_text(to_html(parts, title))
    return path


def _strict(value):
    """NaN as null: report.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value
