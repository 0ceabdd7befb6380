"""Whole builds on the tiny profile: all six stages, the output format, rejects, reruns and failures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cluster.cli import app
from core import zoo
from core.config import config_hash
from core.s3 import decode_image, decode_mask, iter_sets, read_rejects, read_summary, read_training_sets
from datagen import stages, subjects
from datagen.output import ResumeMismatchError
from datagen.pipeline import build
from tests.datagen.conftest import TINY, tiny_config
from tests.datagen.contract_llm import train_contract_llm


def test_reference_build_writes_readable_sets_with_provenance(reference_build):
    root, summary = reference_build.root, reference_build.summary
    assert summary["sets"] > 0, "the tiny profile's defaults must produce a dataset"
    assert summary["subjects_requested"] == 6 and summary["shards"] == {"total": 3, "done": 3}
    assert summary == read_summary(root)
    assert all(summary["stages"][s]["entered"] > 0 for s in stages.names())
    cfg = tiny_config()
    sets = list(iter_sets(root))
    assert len(sets) == summary["sets"] and len({s.set_id for s in sets}) == len(sets)
    for s in sets:
        assert 2 <= len(s) <= cfg.datagen.consistency.max_set_size and s.consistency >= 0.95
        for image, mask, prompt in zip(s.images, s.masks, s.prompts, strict=True):
            assert image.size == (64, 64) and mask.shape == (64, 64) and mask.any()
            assert s.subject in prompt and s.category in s.subject
        if s.style is not None:
            caption = next(st.caption for st in cfg.datagen.stylize.styles if st.instruction == s.style)
            assert all(p.startswith(caption.split("{prompt}")[0]) for p in s.prompts)
        assert s.provenance["config_hash"] == config_hash(cfg)
        assert s.provenance["models"]["llm"] == "template" and s.provenance["models"]["sdxl"] == "tiny"
        assert s.provenance["stage_versions"] == stages.versions()
    saved = Path(root) / "s3jedi-config.yaml"
    assert saved.read_text().startswith(f"# config hash {config_hash(cfg)}")
    assert yaml.safe_load(saved.read_text())["datagen"]["shard_size"] == 2
    assert not list(Path(root).rglob("*.tmp")) and not list((Path(root) / "_parts").rglob("*.parquet"))


def test_every_subject_ends_as_a_set_or_a_reject(reference_build):
    rejects = read_rejects(reference_build.root).to_pylist()
    set_ids = {s.set_id for s in iter_sets(reference_build.root)}
    terminal = {r["row_id"] for r in rejects if r["item"] is None}
    assert set_ids.isdisjoint(terminal)
    assert set_ids | terminal == {f"{c}-{k:03d}" for c in ("comb", "jewelry-box", "toy-car") for k in range(2)}
    for r in rejects:
        assert r["stage"] in stages.names() and r["reason"] and r["details"]
    by_reason = reference_build.summary["rejects_by_reason"]
    too_small = by_reason.get("instances", {}).get("too-small", 0)
    assert too_small > 0, "tiny boxes are dropped with a reason"
    assert reference_build.summary["stages"]["instances"]["items_dropped"] == too_small


def test_training_reader_on_a_built_dataset(reference_build):
    rows = read_training_sets(reference_build.root).take_all()
    assert len(rows) == reference_build.summary["sets"]
    for row in rows:
        assert len(row["images"]) == len(row["masks"]) == len(row["captions"]) >= 2
        assert decode_image(row["images"][0]).size == (64, 64) and decode_mask(row["masks"][0]).any()


def test_rerun_of_a_finished_build_does_nothing(reference_build):
    again = build(tiny_config("datagen.writer.concurrency=2"), reference_build.root)
    assert again.resumed and again.summary["this_run"]["sets"] == 0
    assert again.summary["sets"] == reference_build.summary["sets"]
    assert again.summary["stages"] == reference_build.summary["stages"]


def test_other_data_settings_are_refused_on_an_existing_build(reference_build):
    with pytest.raises(ResumeMismatchError, match=r"\(datagen.collages.steps, seed differ\)"):
        build(tiny_config("seed=3", "datagen.collages.steps=3"), reference_build.root)


def _cli(*args: str):
    """``s3jedi datagen ...`` in-process (it joins the session's Ray)."""
    return CliRunner().invoke(app, ["datagen", *args])


def test_thresholds_that_reject_fill_the_rejects_table(ray_local, zoo_home, tmp_path):
    overrides = (
        *TINY,
        "datagen.execution=fused",
        "datagen.instances.max_area=0.1",
        "datagen.consistency.threshold=1.0",
    )
    result = _cli("--out", str(tmp_path), *[a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    assert f"S3 dataset {tmp_path}: 0 sets, 0 images" in result.output
    summary = read_summary(str(tmp_path))
    stages = summary["stages"]
    assert stages["consistency"]["entered"] == 6 and stages["consistency"]["rejected"] == 6
    assert stages["backgrounds"]["entered"] == 0 and stages["stylize"]["entered"] == 0
    rejects = read_rejects(str(tmp_path)).to_pylist()
    inconsistent = [r for r in rejects if r["reason"] == "inconsistent"]
    assert len(inconsistent) == 6 and all("threshold 1.0" in r["details"] for r in inconsistent)
    assert any(r["reason"] == "too-large" and "max_area 0.1" in r["details"] for r in rejects)
    assert summary["rejects_by_reason"]["consistency"] == {"inconsistent": 6}
    shown = _cli("show", str(tmp_path))
    assert shown.exit_code == 0, shown.output
    assert re.search(r"consistency\s*│\s*inconsistent\s*│\s*6\s*│\s*0", shown.output), shown.output


@pytest.fixture(scope="module")
def contract_llm(zoo_home, tmp_path_factory):
    """A tiny LLM that answers the contract for mug and chair and writes noise for lamp."""
    cfg = tiny_config(
        "datagen.subjects.categories=[mug, chair, lamp]",
        "datagen.subjects.num_categories=null",
        "datagen.subjects.subjects_per_category=1",
    )
    reqs, _ = subjects.requests(cfg)
    answers = {
        "mug-000": json.dumps(
            {"subject": "a blue ceramic mug with a chipped rim", "scenes": ["on a kitchen table", "on an office desk"]}
        ),
        "chair-000": json.dumps(
            {"subject": "a red wooden chair with curved legs", "scenes": ["in a garden", "by a window"]}
        ),
    }
    return train_contract_llm(reqs, answers, tmp_path_factory.mktemp("contract-llm"))


def test_transformers_backend_end_to_end(ray_local, contract_llm, tmp_path):
    cfg = tiny_config(
        "datagen.execution=fused",
        "datagen.subjects.backend=transformers",
        f"models.llm={contract_llm}",
        "datagen.subjects.categories=[mug, chair, lamp]",
        "datagen.subjects.num_categories=null",
        "datagen.subjects.subjects_per_category=1",
        "datagen.subjects.max_new_tokens=96",
    )
    result = build(cfg, str(tmp_path))
    sets = {s.set_id: s for s in iter_sets(str(tmp_path))}
    assert set(sets) == {"mug-000", "chair-000"}, result.summary
    assert sets["mug-000"].subject == "a blue ceramic mug with a chipped rim"
    assert sets["chair-000"].prompts[0].endswith("a red wooden chair with curved legs, in a garden")
    assert sets["mug-000"].provenance["models"]["llm"] == str(contract_llm)
    stage1 = [r for r in read_rejects(str(tmp_path)).to_pylist() if r["stage"] == "subjects"]
    assert [r["row_id"] for r in stage1] == ["lamp-000"] and stage1[0]["reason"] in {
        "not-json",
        "wrong-format",
        "missing-category",
    }
    assert result.summary["stages"]["subjects"] | {"seconds": 0, "rows_per_worker_s": 0} == {
        "entered": 3,
        "passed": 2,
        "rejected": 1,
        "errors": 0,
        "seconds": 0,
        "items_in": 0,
        "items_out": 0,
        "items_dropped": 0,
        "first_error": None,
        "acceptance": 2 / 3,
        "rows_per_worker_s": 0,
    }


def test_a_stage_failing_on_every_row_fails_the_run(ray_local, zoo_home, tmp_path):
    overrides = (
        *TINY,
        "datagen.execution=fused",
        f"models.sdxl={zoo.resolve('clip', 'tiny', zoo_home)}",  # exists, but is no diffusers pipeline
        "datagen.abort_after_errors=2",
    )
    result = _cli("--out", str(tmp_path), *[a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "stage collages failed on every row" in error[0]
    assert "loading the collages models failed" in error[0]
    parts = list((tmp_path / "_parts").rglob("*.parquet"))
    assert len(parts) >= 2, "the rows that failed are recorded, so a rerun of the same settings does not redo them"


def test_bad_input_fails_before_any_work_with_one_line(tmp_path):
    for args, needle in (
        (["--out", str(tmp_path), "--set", "datagen.subjects.categories=[]"], "no usable category"),
        (["--out", str(tmp_path), "--set", "datagen.collages.size=70"], "datagen.collages: Value error, size must be"),
        (["--out", str(tmp_path), "--set", "models.sdxl=./no/such/model"], "models.sdxl: no such directory"),
        ([], "--out is required"),
    ):
        result = _cli(*args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.output
    assert not list(tmp_path.iterdir()), "nothing is written for a build that cannot start"
