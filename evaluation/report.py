"""The HTML report of a run: one self-contained page (inline CSS, no scripts) with relative links to
the grid images, so the run directory can be copied anywhere and opened in any browser.

It says what each metric measures and which way is better, warns when the run was scored (or drawn)
with the project's tiny random models, and shows the generator and the scoring backbones as tables.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from evaluation.metric_info import ALL, LABELS, METRICS

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
.banner { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em 1em; max-width: 60em; }
"""
TINY = "tiny"


def _num(value: float, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _label(metric: str) -> str:
    """The metric's name with the direction that is better (↑ higher, ↓ lower)."""
    return f"{html.escape(LABELS[metric])} {METRICS[metric].arrow}"


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
                    [_label(m), _num(e["mean"]), f"[{_num(e['lo'])}, {_num(e['hi'])}]", str(e["n"])]
                    for m, e in overall["metrics"].items()
                ],
            )
        )
        per_subject = [r for r in rows if r["subject"] != ALL]
        parts.append("<h3>Per subject</h3>")
        parts.append(
            _table(
                ["subject", "images", *(_label(m) for m in metrics)],
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
        + _table(["method", *(_label(m) for m in metrics)], rows)
    )


def _metric_definitions(summary: list[dict]) -> str:
    shown = [m for m in METRICS if any(m in row["metrics"] for row in summary)]
    rows = [
        [_label(m), html.escape(METRICS[m].definition), "higher" if METRICS[m].higher_is_better else "lower"]
        for m in shown
    ]
    return (
        "<h2>Metrics</h2><p class=note>Per image, then averaged; intervals are percentile-bootstrap over images "
        "(docs/evaluation.md).</p>" + _table(["metric", "measures", "better"], rows, cls="text")
    )


def _tiny_banner(info: dict) -> str:
    """A warning when any scoring backbone or the generator is one of the project's tiny random models."""
    backbones = info.get("fingerprint", {}).get("scoring", {}).get("backbones", {})
    tiny = [role for role, ref in backbones.items() if ref == TINY]
    if info["generator"].get("model") == TINY:
        tiny.insert(0, "generator")
    if not tiny:
        return ""
    return (
        f"<p class=banner><strong>Tiny random models</strong> ({html.escape(', '.join(tiny))}): the project's "
        "randomly initialised stand-ins, which make the whole job run on a CPU. These numbers check the "
        "mechanics only and say nothing about image quality; score with a production profile (e.g. "
        "<code>-c sd14</code>) for meaningful values.</p>"
    )


def _value(value, nested: bool = False) -> str:
    """A readable value: a mapping as ``key: value`` lines (``key=value, ...`` inside another), lists
    joined, everything escaped."""
    if isinstance(value, dict):
        if nested:
            return ", ".join(f"{html.escape(str(k))}={_value(v, True)}" for k, v in value.items())
        return "<br>".join(f"{html.escape(str(k))}: {_value(v, True)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value))
    if isinstance(value, float):
        return f"{value:g}"
    return html.escape(str(value))


def _generator(generator: dict) -> str:
    rows = [[html.escape(k.replace("_", " ")), _value(v)] for k, v in generator.items()]
    return "<h2>Generator</h2>" + _table(["setting", "value"], rows, cls="text")


def _backbones(scorers: dict, refs: dict[str, str]) -> str:
    """One row per scoring role: the config's reference, what was loaded, and how images are prepared."""
    rows = []
    for role, desc in scorers.items():
        if not isinstance(desc, dict):
            rows.append([html.escape(role), "", _value(desc)])
            continue
        ref = refs.get(role, "")
        details = {k: v for k, v in desc.items() if k != "model"}
        loaded = desc.get("model", "")
        model = f"{html.escape(ref)}<br><span class=note>{html.escape(str(loaded))}</span>" if ref else _value(loaded)
        rows.append([html.escape(role), model, _value(details)])
    return "<h2>Backbones and preprocessing</h2>" + _table(["role", "model", "settings"], rows, cls="text")


def write_report(run_dir: Path, info: dict, summary: list[dict], grids: dict[str, Path], confidence: float) -> Path:
    """``info``: run.json's content plus ``scorers`` (the suite's description)."""
    generator = info["generator"]
    refs = info.get("fingerprint", {}).get("scoring", {}).get("backbones", {})
    run_rows = [
        ["method", html.escape(str(generator.get("method")))],
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
{_tiny_banner(info)}
{_table(["run", ""], run_rows, cls="text")}
{_summary_tables(summary, confidence)}
{_metric_definitions(summary)}
{_published()}
<h2>Images</h2>{grid_html}
{_generator(generator)}
{_backbones(info["scorers"], refs)}
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path
