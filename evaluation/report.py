"""The HTML report of a run: one self-contained page (inline CSS, no scripts) with relative links to
the grid images, so the run directory can be copied anywhere and opened in any browser."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from evaluation.statistics import ALL, LABELS

PUBLISHED_SOURCE = (
    "JeDi (Zeng et al., CVPR 2024), Table 2: SD1.4-based models, DreamBench, CLIP ViT-B/32, DINO ViT-S/16"
)
PUBLISHED = {
    "DreamBooth": {"clip_t": 0.2812, "clip_i": 0.8135, "mclip_i": 0.8683, "dino": 0.6341, "mdino": 0.7115},
    "JeDi, 3 references": {"clip_t": 0.2932, "clip_i": 0.8139, "mclip_i": 0.9011, "dino": 0.6791, "mdino": 0.8037},
}
"""Published numbers for comparison; meaningful only for runs with the same backbones and protocol."""

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
table.text td { text-align: left; max-width: 60em; }
code { font-size: 12px; white-space: pre-wrap; }
img.grid { max-width: 100%; border: 1px solid #ccc; image-rendering: pixelated; }
.note { color: #555; }
"""


def _num(value: float, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _cell(est: dict) -> str:
    if not est["n"]:
        return "–"
    return f"{_num(est['mean'])} <span class=note>[{_num(est['lo'])}, {_num(est['hi'])}]</span>"


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_tables(summary: list[dict], confidence: float) -> str:
    parts = []
    for protocol in sorted({row["protocol"] for row in summary}):
        rows = [r for r in summary if r["protocol"] == protocol]
        metrics = list(rows[0]["metrics"])
        overall = next(r for r in rows if r["subject"] == ALL)
        parts.append(f"<h2>Protocol: {html.escape(protocol)} ({overall['images']} images)</h2>")
        parts.append(
            _table(
                ["metric", "mean", f"{confidence:.0%} CI", "images scored"],
                [
                    [LABELS[m], _num(e["mean"]), f"[{_num(e['lo'])}, {_num(e['hi'])}]", str(e["n"])]
                    for m, e in overall["metrics"].items()
                ],
            )
        )
        per_subject = [r for r in rows if r["subject"] != ALL]
        parts.append("<h3>Per subject</h3>")
        parts.append(
            _table(
                ["subject", "images", *(LABELS[m] for m in metrics)],
                [
                    [html.escape(r["subject"]), str(r["images"]), *(_cell(r["metrics"][m]) for m in metrics)]
                    for r in per_subject
                ],
            )
        )
    return "\n".join(parts)


def _published() -> str:
    metrics = list(next(iter(PUBLISHED.values())))
    rows = [[html.escape(name), *(_num(v[m]) for m in metrics)] for name, v in PUBLISHED.items()]
    return (
        f"<h2>Published numbers</h2><p class=note>{html.escape(PUBLISHED_SOURCE)}. Comparable only with runs "
        "that use the same backbones, preprocessing and protocol (see docs/evaluation.md).</p>"
        + _table(["method", *(LABELS[m] for m in metrics)], rows)
    )


def _backbones(scorers: dict) -> str:
    rows = []
    for role, desc in scorers.items():
        text = desc if isinstance(desc, str) else json.dumps(desc, indent=1, default=str)
        rows.append([html.escape(role), f"<code>{html.escape(text)}</code>"])
    return "<h2>Backbones and preprocessing</h2>" + _table(["role", "description"], rows, cls="text")


def write_report(run_dir: Path, info: dict, summary: list[dict], grids: dict[str, Path], confidence: float) -> Path:
    """``info``: run.json's content plus ``scorers`` (the suite's description)."""
    generator = info["generator"]
    run_rows = [
        ["method", html.escape(str(generator.get("method")))],
        ["generator", f"<code>{html.escape(json.dumps(generator, default=str))}</code>"],
        ["benchmark", html.escape(str(info["benchmark"]))],
        ["config hash", html.escape(info["config_hash"])],
        ["fingerprint", html.escape(info["fingerprint_hash"])],
        ["finished", html.escape(str(info.get("finished", "")))],
    ]
    if info.get("skipped_photos"):  # --skip-bad-photos left these out of the run
        skipped = "<br>".join(html.escape(f"{p['file']}: {p['reason']}") for p in info["skipped_photos"])
        run_rows.append(["skipped photos", skipped])
    grid_html = "".join(
        f"<h3>{html.escape(subject)}</h3><img class=grid src='{html.escape(path.relative_to(run_dir).as_posix())}' "
        f"alt='generated images of {html.escape(subject)}'>"
        for subject, path in grids.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>s3jedi evaluation: {html.escape(str(generator.get("method")))}</title>
<style>{STYLE}</style></head><body>
<h1>DreamBooth benchmark: {html.escape(str(generator.get("method")))}</h1>
{_table(["run", ""], run_rows, cls="text")}
{_summary_tables(summary, confidence)}
{_published()}
<h2>Images</h2>{grid_html}
{_backbones(info["scorers"])}
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path
