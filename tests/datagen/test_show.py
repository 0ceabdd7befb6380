"""``s3jedi datagen show``: the per-stage counts its help promises, dropped items apart from rejected rows,
the raw summary, and shard verification on demand; on this builder's datasets and on older ones."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cluster.cli import app
from core.s3 import read_summary
from datagen import stages

V1_BUILD = Path(__file__).parent / "data" / "s3-v1"


def show(*args: str):
    return CliRunner().invoke(app, ["datagen", "show", *args], env={"COLUMNS": "200"})


def stage_row(output: str, stage: str) -> tuple[int, ...]:
    """entered, passed, rejected, dropped items, errors of one row of the stage table."""
    match = re.search(rf"│ {stage}\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│", output)
    assert match, output
    return tuple(int(g) for g in match.groups())


def test_show_prints_every_stage_with_its_dropped_items(reference_build):
    summary = reference_build.summary
    result = show(reference_build.root)
    assert result.exit_code == 0, result.output
    assert f"{summary['sets']} sets, {summary['images']} images from 6 subjects requested" in result.output
    for name in stages.names():
        st = summary["stages"][name]
        assert stage_row(result.output, name) == (
            st["entered"],
            st["passed"],
            st["rejected"],
            st["items_dropped"],
            st["errors"],
        )
    too_small = summary["rejects_by_reason"]["instances"]["too-small"]
    assert stage_row(result.output, "instances")[3] == too_small > 0
    assert re.search(rf"│ instances\s*│ too-small\s*│\s*0\s*│\s*{too_small}\s*│", result.output), result.output
    raw = show(reference_build.root, "--json")
    assert raw.exit_code == 0 and json.loads(raw.output) == read_summary(reference_build.root)


def test_show_on_a_dataset_of_the_previous_builder(tmp_path):
    """Its summary has no dropped items and its stage table said 0 rejected next to 45 too-small rejects:
    the counts now come from its rejects table."""
    root = tmp_path / "old"
    shutil.copytree(V1_BUILD, root)
    result = show(str(root), "--verify")
    assert result.exit_code == 0, result.output
    assert stage_row(result.output, "instances") == (3, 3, 0, 45, 0)
    assert len(re.findall(r"shard-0000[01]\s*│\s*\d+\s*│ ok", result.output)) == 2, result.output


def test_show_verify_names_damaged_shards_and_exits_1(reference_build, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(reference_build.root, root)
    shard = root / "sets" / "shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    result = show(str(root), "--verify")
    assert result.exit_code == 1
    assert re.search(r"shard-00001 .*damaged: sets/shard-00001\.parquet: not a readable Parquet file", result.output)
    assert "1 of 3 shard(s) damaged" in result.output and f"s3jedi datagen --out {root}" in result.output
