"""Self-distillation end to end on local Ray: a DreamBooth teacher, mining, the gold filter, the student.

The first run trains the dog's teacher and a student on its gold samples; a rerun resumes without
training or mining again. Zero gold is checked on that run's own samples with the masked score removed
(default run); the slow tests run it end to end (through the CLI: the teacher reused, a detector
threshold nothing passes, so no sample has a masked score and the student learns from the photos
alone) and chain two rounds.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from core import zoo
from core.subjects import apply_subject, read_card
from tests.selfdistill.conftest import sd_config, settings
from training.cli import app as training_app
from training.selfdistill.gold import select_gold
from training.selfdistill.prompts import MinedPrompt
from training.selfdistill.records import gold_path, read_summary, write_round
from training.selfdistill.runner import gold_sources, round_record, selfdistill

GOLD_ALL = "selfdistill.gold.top_percent=100"  # every sample with both scores is gold: the student gets some


def test_a_missing_negclip_checkpoint_fails_before_any_training(tmp_path, dog_dir):
    cfg = sd_config(tmp_path, f"models.negclip={tmp_path / 'negclip.pth'}")
    with pytest.raises(zoo.ModelNotFoundError, match="models.negclip: no such directory or file"):
        selfdistill(cfg, str(dog_dir))
    assert not (tmp_path / "runs").exists()


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
    teacher, student = read_card(tmp / "store" / dog.teacher), read_card(tmp / "store" / dog.student)
    for card, method in ((teacher, "dreambooth"), (student, "selfdistill")):
        # §3.1: every UNet weight is trained, on "a [V] [class noun]"; the student like its teacher (§3.3)
        assert (card.method, card.tokens, card.weights.present()) == (method, ["sks"], {"unet": "unet"})
        assert card.prompt_template == "a {0} {1}"
    (summary,) = dog.rounds
    assert summary["samples"] == 4 and summary["gold"] > 0 and not summary["photos_only"]
    assert summary["keep"] == 4 and summary["conflict_minimum"] == {"mclip_i": 0.7, "negclip_t": 0.25}
    assert set(dog.seconds) == {"teacher", "prompts", "generation", "scoring", "student"}
    assert list(report.wall_s) == ["teacher", "mining-r1", "student-r1"]
    assert report.wall_s["teacher"] >= dog.seconds["teacher"], "the driver's wall includes the worker's time"
    assert sum(dog.shares().values()) == pytest.approx(1.0, abs=1e-3)
    saved = json.loads((tmp / "runs" / "selfdistill-tiny" / "report.json").read_text())
    assert saved["done"] == 1 and saved["subjects"][0]["rounds"][0]["gold"] == summary["gold"]


def test_every_round_is_recorded_in_parquet(first):
    tmp, report = first
    where = tmp / "runs" / "selfdistill-tiny" / "mining" / "dog" / "round-1"
    prompts = pq.read_table(where / "prompts.parquet").to_pylist()
    assert [p["prompt_id"] for p in prompts] == [0, 1] and all("{0} {1}" in p["template"] for p in prompts)
    kept = json.loads((tmp / "runs" / "selfdistill-tiny" / "prompts" / "dog.json").read_text())
    assert kept["class_word"] == "dog" and [p["template"] for p in kept["prompts"]] == [p["template"] for p in prompts]
    assert {p["source"] for p in prompts} == {"template"} and {p["teacher"] for p in prompts} == {
        "dog-selfdistill-teacher"
    }
    samples = pq.read_table(where / "samples.parquet")
    for column in ("teacher", "prompt_id", "seed", "image", "mclip_i", "negclip_t", "clip_t", "gold", "conflicted"):
        assert column in samples.column_names
    assert "hard_negative_acc" in samples.column_names, "the project's own text metric is kept beside NegCLIP-T"
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
        run / "prompts" / "dog.json",
    ]
    stamps = [p.stat().st_mtime_ns for p in watched]
    again = selfdistill(sd_config(tmp, GOLD_ALL), str(dog_dir))
    assert [p.stat().st_mtime_ns for p in watched] == stamps
    assert again.subjects[0].rounds[0]["gold"] == report.subjects[0].rounds[0]["gold"]
    with pytest.raises(
        ValueError, match=r"selfdistill.name: .* other settings \(selfdistill.gold.top_percent: 100.0 there, 12.0 now\)"
    ):
        selfdistill(sd_config(tmp), str(dog_dir))


def round_inputs(tmp):
    """The first run's round of the dog: its samples (without the written flags) and its prompts."""
    where = tmp / "runs" / "selfdistill-tiny" / "mining" / "dog" / "round-1"
    samples = pq.read_table(where / "samples.parquet").drop(["gold", "conflicted"])
    prompts = pq.read_table(where / "prompts.parquet").to_pylist()
    resolved = {
        **{k: prompts[0][k] for k in ("class_word", "answer", "reason", "details", "source")},
        "prompts": [MinedPrompt(p["prompt_id"], p["template"], p["text"]) for p in prompts],
    }
    return samples, resolved


def test_zero_gold_is_recorded_and_leaves_the_student_its_photos_only(first, tmp_path):
    """The first run's real samples with the masked score gone (nothing detected): no gold, every sample
    conflicts (§4: no subject found), the round is written with an empty gold table, and the student
    gets no gold source."""
    tmp, _ = first
    run = str(tmp / "runs" / "selfdistill-tiny")
    samples, resolved = round_inputs(tmp)
    none = select_gold(
        np.full(samples.num_rows, np.nan),
        samples["negclip_t"].to_numpy(),
        samples["prompt_id"].to_numpy(),
        samples["sample"].to_numpy(),
        100,
        0.7,
        -1.0,
    )
    assert none.count == 0 and none.conflict_rate == 1.0 and none.conflicted.all()
    with_gold = read_summary(run, "dog", 1)
    zero = replace(with_gold, subject="cat", gold=0, conflict_rate=1.0, conflicts=4, image_threshold=None)
    write_round(str(tmp_path), resolved, samples, none, zero)
    assert pq.read_table(gold_path(str(tmp_path), "cat", 1)).num_rows == 0
    assert read_summary(str(tmp_path), "cat", 1).gold == 0
    assert gold_sources(run, 1, {"dog": with_gold, "cat": zero}) == {"dog": gold_path(run, "dog", 1)}
    assert round_record(zero, "cat-selfdistill")["photos_only"] and not round_record(with_gold, "x")["photos_only"]


def test_the_ablation_trains_every_gold_sample_on_the_instance_prompt(first, tmp_path):
    """§4.3: "a [V] [class noun]" instead of the mining prompt, one switch (``student.gold_prompt``)."""
    tmp, _ = first
    samples, resolved = round_inputs(tmp)
    everything = select_gold(
        samples["mclip_i"].to_numpy(),
        samples["negclip_t"].to_numpy(),
        samples["prompt_id"].to_numpy(),
        samples["sample"].to_numpy(),
        100,
        0.7,
        0.25,
    )
    summary = replace(read_summary(str(tmp / "runs" / "selfdistill-tiny"), "dog", 1), gold=everything.count)
    write_round(str(tmp_path / "mining"), resolved, samples, everything, summary)
    write_round(str(tmp_path / "ablation"), resolved, samples, everything, summary, "a {0} {1}")
    mined = pq.read_table(gold_path(str(tmp_path / "mining"), "dog", 1))["prompt"].to_pylist()
    plain = pq.read_table(gold_path(str(tmp_path / "ablation"), "dog", 1))["prompt"].to_pylist()
    assert len(mined) == len(plain) == 4 and set(plain) == {"a {0} {1}"} and "a {0} {1}" not in mined
    cfg = sd_config(tmp, "selfdistill.student.gold_prompt=instance")
    assert cfg.selfdistill.student.gold_prompt == "instance"


@pytest.mark.slow
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
    assert summary["gold"] == 0 and summary["photos_only"] and summary["conflict_rate"] == 1.0, "no subject found"
    assert summary["image_threshold"] is None, "no sample has a masked score"
    where = tmp / "runs" / "no-gold" / "mining" / "dog" / "round-1"
    assert pq.read_table(where / "gold.parquet").num_rows == 0
    assert pq.read_table(where / "samples.parquet")["mask_found"].to_pylist() == [False] * 4
    assert read_card(tmp / "store" / "dog-photos-only").method == "selfdistill"


@pytest.mark.slow
def test_two_rounds_chain_teacher_to_student(first, dog_dir):
    """Round 1's student teaches round 2; both rounds are mined with the class's prompts and recorded."""
    tmp, _ = first
    cfg = sd_config(
        tmp,
        GOLD_ALL,
        "selfdistill.name=two-rounds",
        "selfdistill.rounds=2",
        "selfdistill.teacher='{subject}-selfdistill-teacher'",
        "selfdistill.subject_id='{subject}-twice'",
    )
    report = selfdistill(cfg, str(dog_dir))
    (dog,) = report.subjects
    assert dog.status == "done", dog.error
    assert [r["teacher"] for r in dog.rounds] == ["dog-selfdistill-teacher", "dog-twice-r1"]
    assert [r["student"] for r in dog.rounds] == ["dog-twice-r1", "dog-twice"] and dog.student == "dog-twice"
    assert list(report.wall_s) == ["teacher", "mining-r1", "student-r1", "mining-r2", "student-r2"]
    run = tmp / "runs" / "two-rounds" / "mining" / "dog"
    samples = [pq.read_table(run / f"round-{r}" / "samples.parquet") for r in (1, 2)]
    assert [set(t["teacher"].to_pylist()) for t in samples] == [{"dog-selfdistill-teacher"}, {"dog-twice-r1"}]
    assert not set(samples[0]["seed"].to_pylist()) & set(samples[1]["seed"].to_pylist()), "rounds draw anew"
    prompts = [pq.read_table(run / f"round-{r}" / "prompts.parquet")["template"].to_pylist() for r in (1, 2)]
    assert prompts[0] == prompts[1], "the class's mining prompts serve every round"
    for sid in ("dog-twice-r1", "dog-twice"):
        assert read_card(tmp / "store" / sid).method == "selfdistill"
