"""Self-distillation end to end on local Ray: a DreamBooth teacher, mining, the gold filter, the student.

The first run trains the dog's teacher and a student on its gold samples; a rerun resumes without
training or mining again. A second run (through the CLI) reuses that teacher with a detector threshold
nothing passes, so no sample has a masked score and the subject has zero gold: the report says so and
the student learns from the photos alone.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from core import zoo
from core.subjects import LORA_FILE, apply_subject, read_card
from tests.selfdistill.conftest import sd_config, settings
from training.cli import app as training_app
from training.selfdistill.runner import selfdistill

GOLD_ALL = "selfdistill.gold.top_percent=100"  # every sample with both scores is gold: the student gets some


@pytest.fixture(scope="module")
def first(ray_local, zoo_home, tmp_path_factory, dog_dir):
    tmp = tmp_path_factory.mktemp("selfdistill")
    report = selfdistill(sd_config(tmp, GOLD_ALL), str(dog_dir))
    return tmp, report


def test_teacher_mining_gold_and_student(first):
    tmp, report = first
    assert [s.status for s in report.subjects] == ["done"], report.to_dict()
    dog = report.subjects[0]
    assert (dog.teacher, dog.student) == ("dog-selfdistill-teacher", "dog-selfdistill")
    assert read_card(tmp / "store" / dog.teacher).method == "dreambooth"
    card = read_card(tmp / "store" / dog.student)
    assert (card.method, card.tokens, card.weights.present()) == ("selfdistill", ["sks"], {"lora": LORA_FILE})
    (summary,) = dog.rounds
    assert summary["samples"] == 4 and summary["gold"] > 0 and not summary["photos_only"]
    assert set(dog.seconds) == {"teacher", "prompts", "generation", "scoring", "student"}
    assert sum(dog.shares().values()) == pytest.approx(1.0, abs=1e-3)
    saved = json.loads((tmp / "runs" / "selfdistill-tiny" / "report.json").read_text())
    assert saved["done"] == 1 and saved["subjects"][0]["rounds"][0]["gold"] == summary["gold"]


def test_every_round_is_recorded_in_parquet(first):
    tmp, report = first
    where = tmp / "runs" / "selfdistill-tiny" / "mining" / "dog" / "round-1"
    prompts = pq.read_table(where / "prompts.parquet").to_pylist()
    assert [p["prompt_id"] for p in prompts] == [0, 1] and all("{0} {1}" in p["template"] for p in prompts)
    assert {p["source"] for p in prompts} == {"template"} and {p["teacher"] for p in prompts} == {
        "dog-selfdistill-teacher"
    }
    samples = pq.read_table(where / "samples.parquet")
    for column in ("teacher", "prompt_id", "seed", "image", "mclip_i", "neg_clip_t", "clip_t", "conflict", "gold"):
        assert column in samples.column_names
    assert samples.num_rows == 4 and len(set(samples["seed"].to_pylist())) == 4
    assert np.isfinite(samples["mclip_i"].to_numpy()).all() and samples["mask_found"].to_pylist() == [True] * 4
    meta = json.loads(samples.schema.metadata[b"s3jedi.selfdistill"])
    assert meta["gold"] == sum(samples["gold"].to_pylist()) == report.subjects[0].rounds[0]["gold"]
    gold = pq.read_table(where / "gold.parquet")
    assert gold.num_rows == meta["gold"] and all(p.count("{0} {1}") == 1 for p in gold["prompt"].to_pylist())


def test_the_student_loads_into_a_fresh_pipeline(first):
    tmp, _ = first
    pipe = apply_subject(zoo.load("sd", "tiny"), tmp / "store" / "dog-selfdistill")
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a photo of sks dog on a pier",
        num_inference_steps=1,
        height=32,
        width=32,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()


def test_a_rerun_resumes_without_training_or_mining_again(first, dog_dir):
    tmp, report = first
    run = tmp / "runs" / "selfdistill-tiny"
    watched = [
        run / "teacher" / "report.json",
        run / "student-r1" / "report.json",
        run / "mining" / "dog" / "round-1" / "samples.parquet",
    ]
    stamps = [p.stat().st_mtime_ns for p in watched]
    again = selfdistill(sd_config(tmp, GOLD_ALL), str(dog_dir))
    assert [p.stat().st_mtime_ns for p in watched] == stamps
    assert again.subjects[0].rounds[0]["gold"] == report.subjects[0].rounds[0]["gold"]
    with pytest.raises(
        ValueError, match=r"selfdistill.name: .* other settings \(selfdistill.gold.top_percent: 100.0 there, 50.0 now\)"
    ):
        selfdistill(sd_config(tmp), str(dog_dir))


def test_zero_gold_is_reported_and_the_student_learns_from_photos_only(first, dog_dir):
    tmp, _ = first
    overrides = settings(
        tmp,
        "selfdistill.name=no-gold",
        "selfdistill.teacher='{subject}-selfdistill-teacher'",  # quoted: YAML reads {..} as a mapping
        "selfdistill.subject_id='{subject}-photos-only'",
        "selfdistill.scoring.box_threshold=1.0",  # nothing is detected: no masked score, no gold
    )
    result = CliRunner().invoke(
        training_app, ["selfdistill", "--subjects", str(dog_dir), *[a for s in overrides for a in ("--set", s)]]
    )
    assert result.exit_code == 0, result.output[-3000:]
    text = result.stdout
    report = json.JSONDecoder().raw_decode(text[text.index("{\n") :])[0]
    (dog,) = report["subjects"]
    assert dog["teacher"] == "dog-selfdistill-teacher" and "teacher" not in dog["seconds"], "the teacher is reused"
    (summary,) = dog["rounds"]
    assert summary["gold"] == 0 and summary["photos_only"] and summary["conflict_rate"] == 1.0
    assert summary["image_threshold"] is None, "no sample has a masked score"
    where = tmp / "runs" / "no-gold" / "mining" / "dog" / "round-1"
    assert pq.read_table(where / "gold.parquet").num_rows == 0
    assert pq.read_table(where / "samples.parquet")["mask_found"].to_pylist() == [False] * 4
    assert read_card(tmp / "store" / "dog-photos-only").method == "selfdistill"
