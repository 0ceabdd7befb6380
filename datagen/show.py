"""``s3jedi datagen show``: a finished (or resumed) build at a glance, and its shards checked on demand.

The per-stage table is the one the build prints at its end; reject counts come from the rejects
table itself, so a dataset of any builder version shows the rows a stage rejected whole and the
single items (boxes, images) it dropped from rows it passed on.
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from core.s3 import read_rejects
from datagen.output import OutputDir, shard_name
from datagen.summary import Tally, stage_table


def _rejects_table(rejects) -> Table:
    rows: Counter = Counter()
    items: Counter = Counter()
    for stage, reason, item in zip(
        rejects.column("stage").to_pylist(),
        rejects.column("reason").to_pylist(),
        rejects.column("item").to_pylist(),
        strict=True,
    ):
        (rows if item is None else items)[(stage, reason)] += 1
    table = Table(title="rejects by reason", title_justify="left")
    for col in ("stage", "reason", "rows", "dropped items"):
        table.add_column(col, justify="left" if col in ("stage", "reason") else "right")
    for stage, reason in sorted(set(rows) | set(items), key=lambda k: -(rows[k] + items[k])):
        table.add_row(stage, reason, str(rows[(stage, reason)]), str(items[(stage, reason)]))
    return table


def render(root: str, summary: dict, console: Console) -> None:
    """The summary of a build: totals, the per-stage table, the rejects by reason, and the last run."""
    acceptance = summary.get("acceptance_rate")
    shards = summary.get("shards", {})
    console.print(
        f"S3 dataset {root}: {summary['sets']} sets, {summary['images']} images from "
        f"{summary.get('subjects_requested', '?')} subjects requested "
        f"(acceptance {'-' if acceptance is None else f'{acceptance:.0%}'}); "
        f"shards {shards.get('done', '?')}/{shards.get('total', '?')}; profile {summary.get('profile', '?')}",
        soft_wrap=True,
    )
    rejects = read_rejects(root)
    if "stages" in summary:
        tally = Tally.from_summary(summary)
        tally.count_dropped(rejects)
        console.print(stage_table(tally, "stages"))
    if rejects.num_rows:
        console.print(_rejects_table(rejects))
    run = summary.get("this_run")
    if run:
        rebuilt = run.get("rebuilt_shards") or {}
        console.print(
            f"last run: {run['sets']} sets made in {run['wall_s']:.0f}s"
            + (" (resumed)" if run.get("resumed") else "")
            + (f"; rebuilt {len(rebuilt)} damaged shard(s): {', '.join(rebuilt)}" if rebuilt else "")
        )


def verify_shards(root: str, console: Console) -> bool:
    """Check every finished shard against its marker, as a resumed build does; True if all match."""
    output = OutputDir(root)
    markers = output.done()
    table = Table(title="shard check", title_justify="left")
    for col in ("shard", "sets", "state"):
        table.add_column(col)
    damaged = 0
    for shard, marker in sorted(markers.items()):
        reason = output.verify(marker)
        damaged += reason is not None
        table.add_row(shard_name(shard), str(marker["sets"]), f"[red]damaged: {reason}[/red]" if reason else "ok")
    console.print(table)
    if not markers:
        console.print(f"[red]{root}: no finished shard is recorded (no _done markers)[/red]")
        return False
    if damaged:
        console.print(
            f"[red]{damaged} of {len(markers)} shard(s) damaged[/red]: rerun `s3jedi datagen --out {root}` with the "
            "build's config (s3jedi-config.yaml) to rebuild them",
            soft_wrap=True,
        )
    return damaged == 0
