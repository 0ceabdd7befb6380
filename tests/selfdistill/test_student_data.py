"""The student's data source: the subject's photos plus gold samples, each with its own prompt."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from tests.selfdistill.conftest import sd_config
from training.finetune.recipe import SubjectJob, SubjectRecipe
from training.finetune.subjects import SubjectDataError, load_extra_instances, load_subject

PROMPTS = ["a {0} {1} on a pier", "a watercolor painting of a {0} {1}"]


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_gold(path, prompts) -> None:
    images = [np.full((48, 40, 3), value, np.uint8) for value in (20, 220)]
    pq.write_table(pa.table({"image": [_png(a) for a in images], "prompt": prompts}), path)


def test_gold_samples_are_drawn_with_their_own_prompts(zoo_home, tmp_path, dog_dir):
    cfg = sd_config(tmp_path, "finetune.batch_size=16")
    write_gold(tmp_path / "gold.parquet", PROMPTS)
    extra = load_extra_instances(str(tmp_path / "gold.parquet"), 32)
    assert extra[0].shape == (2, 32, 32, 3) and extra[1] == PROMPTS
    photos = load_subject(str(dog_dir), 32)

    def tuner(share: float) -> SubjectRecipe:
        job = SubjectJob("dog", str(dog_dir), "dog", "selfdistill", "dog-selfdistill", None, "gold", share)
        recipe = SubjectRecipe.of(cfg, job)
        recipe.load(photos, None, extra, torch.device("cpu"), "fp32")
        return recipe

    every = tuner(1.0)
    assert every.plan.method == "selfdistill" and every.num_photos == len(photos)
    rendered = every.models.token_ids(
        ["a photo of sks dog", *(p.replace("{0}", "sks").replace("{1}", "dog") for p in PROMPTS)]
    )
    ids = every.batch(1).ids
    assert {tuple(r) for r in ids.tolist()} == {tuple(r) for r in rendered[1:].tolist()}, "only gold prompts"
    ids = tuner(0.0).batch(1).ids
    assert {tuple(r) for r in ids.tolist()} == {tuple(rendered[0].tolist())}, "only the photos' prompt"
    half = tuner(0.5)
    ids = half.batch(1).ids
    drawn = {tuple(r) for r in ids.tolist()}
    assert tuple(rendered[0].tolist()) in drawn and len(drawn) > 1, "both sources at 0.5"
    assert np.isfinite(half.train_step(1)["loss"])


def test_gold_prompts_need_the_identifier_slot(tmp_path):
    write_gold(tmp_path / "gold.parquet", ["a dog on a pier", PROMPTS[1]])
    with pytest.raises(SubjectDataError, match=r"gold.parquet row 0: prompt 'a dog on a pier' has no \{0\}"):
        load_extra_instances(str(tmp_path / "gold.parquet"), 32)
