"""S3 as a Hugging Face dataset: the ``datasets`` library opens a build as it is, images decoded.

The build's dataset card (``README.md``) declares the configs and features, so ``load_dataset(root)``
needs nothing else; the Parquet files carry the features too, so ``load_dataset("parquet", ...)`` on
the shards alone decodes every image and mask. A build of the previous builder (schema version 1)
becomes such a dataset when it is resumed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml
from datasets import Features, load_dataset

from core.config import load_config
from core.s3 import SETS_SCHEMA, iter_sets, read_rejects
from core.s3.card import CARD_FILE
from datagen import stages
from datagen.pipeline import build

V1_BUILD = Path(__file__).parent / "data" / "s3-v1"


def assert_same_sets(hf_rows, root: str) -> None:
    ours = {s.set_id: s for s in iter_sets(root)}
    assert sorted(r["set_id"] for r in hf_rows) == sorted(ours)
    for row in hf_rows:
        s = ours[row["set_id"]]
        assert [im["prompt"] for im in row["images"]] == s.prompts and row["style"] == s.style
        for i, im in enumerate(row["images"]):
            assert im["image"].mode == "RGB" and np.array_equal(np.asarray(im["image"]), np.asarray(s.images[i]))
            assert np.array_equal(np.asarray(im["mask"]) > 0, s.masks[i])
            assert im["image"].size == (im["width"], im["height"])


def test_the_datasets_library_opens_a_build_with_images_decoded(reference_build, tmp_path):
    root = reference_build.root
    by_card = load_dataset(root, split="train", cache_dir=str(tmp_path / "cache"))
    assert len(by_card) == reference_build.summary["sets"] > 0
    assert by_card.features == Features.from_arrow_schema(SETS_SCHEMA)
    assert_same_sets(list(by_card), root)
    shards = sorted(str(p) for p in Path(root, "sets").glob("*.parquet"))
    by_files = load_dataset("parquet", data_files=shards, split="train", cache_dir=str(tmp_path / "cache2"))
    assert by_files.features == by_card.features, "the features travel in the Parquet files too"
    rejects = load_dataset(root, "rejects", split="train", cache_dir=str(tmp_path / "cache3"))
    assert len(rejects) == read_rejects(root).num_rows > 0


def test_the_card_declares_configs_features_counts_licenses_and_provenance(reference_build):
    text = (Path(reference_build.root) / CARD_FILE).read_text()
    _, header, body = text.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert [c["config_name"] for c in meta["configs"]] == ["default", "rejects"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "sets/*.parquet"}]
    info = {c["config_name"]: c for c in meta["dataset_info"]}
    assert Features._from_yaml_list(info["default"]["features"]) == Features.from_arrow_schema(SETS_SCHEMA)
    summary = reference_build.summary
    assert f"{summary['sets']} sets, {summary['images']} images from 6 subjects requested" in body
    assert "| sdxl | `tiny` | random weights made by s3jedi" in body and "| llm | `template` |" in body
    versions = ", ".join(f"{k} {v}" for k, v in stages.versions().items())
    assert f"| stage versions | {versions} |" in body and f"`{summary['fingerprint']}`" in body
    too_small = summary["rejects_by_reason"]["instances"]["too-small"]
    assert f"| instances | too-small | {too_small} |" in body


def test_resuming_a_build_of_the_previous_builder_makes_it_a_hub_dataset(ray_local, zoo_home, tmp_path):
    root = tmp_path / "old"
    shutil.copytree(V1_BUILD, root)
    before = {s.set_id: [im.tobytes() for im in s.images] for s in iter_sets(str(root))}
    # the settings it was built with: the tiny profile, one subject per category
    cfg = load_config("tiny", ["datagen.progress=false", "datagen.execution=fused"])
    result = build(cfg, str(root))
    assert (
        result.resumed and result.summary["this_run"]["sets"] == 0 and not result.summary["this_run"]["rebuilt_shards"]
    )
    assert result.summary["sets"] == 3 and result.summary["stages"]["instances"]["items_dropped"] == 45
    for shard in (root / "sets").glob("*.parquet"):
        assert pq.read_schema(shard).metadata[b"s3jedi.schema_version"] == b"2"
    assert {s.set_id: [im.tobytes() for im in s.images] for s in iter_sets(str(root))} == before
    sets = load_dataset(str(root), split="train", cache_dir=str(tmp_path / "cache"))
    assert_same_sets(list(sets), str(root))
    rejects = load_dataset(str(root), "rejects", split="train", cache_dir=str(tmp_path / "cache2"))
    assert len(rejects) == 45
