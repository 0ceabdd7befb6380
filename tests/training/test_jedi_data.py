"""Sources of training sets: folders of subjects, captioned single images, corrupt files."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.config.training import DataSource, JeDiDataSection
from training.jedi.data import caption_folder_items, decode_set, folder_sets, source_dataset


def test_folder_sets_of_the_dreambooth_photos(dreambooth):
    rows = folder_sets(dreambooth / "images", "a photo of {name}")
    assert [r["set_id"] for r in rows] == ["folder:backpack", "folder:cat", "folder:dog", "folder:teapot"]
    dog = rows[2]
    assert len(dog["paths"]) == 5 and dog["captions"][0] == "a photo of dog"
    decoded = decode_set(dog, size=80)
    assert decoded["error"] == "" and decoded["pixels"].shape == (5, 80, 80, 3)


def test_captions_beside_images_win_and_missing_sources_fail(tmp_path, dreambooth):
    sub = tmp_path / "sets" / "my_teapot"
    sub.mkdir(parents=True)
    (sub / "a.jpg").write_bytes((dreambooth / "images" / "teapot" / "00.jpg").read_bytes())
    (sub / "a.txt").write_text("a blue teapot on a table\n")
    (sub / "b.jpg").write_bytes((dreambooth / "images" / "teapot" / "01.jpg").read_bytes())
    rows = folder_sets(tmp_path / "sets", "a photo of {name}")
    assert rows[0]["captions"] == ["a blue teapot on a table", "a photo of my teapot"]
    assert caption_folder_items(tmp_path / "sets")[0]["captions"] == ["a blue teapot on a table"]
    with pytest.raises(ValueError, match="is not a directory"):
        folder_sets(tmp_path / "nope", "x")
    with pytest.raises(ValueError, match="no images with NAME.txt captions"):
        caption_folder_items(tmp_path / "sets" / "empty_dir_that_is_missing")


def test_corrupt_and_mismatched_sets_are_marked_not_raised(tmp_path, dreambooth):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes((dreambooth / "images" / "dog" / "00.jpg").read_bytes()[:500])
    good = str(dreambooth / "images" / "dog" / "01.jpg")
    out = decode_set({"set_id": "x", "paths": [good, str(bad)], "captions": ["a", "b"]}, size=16)
    assert out["error"] and out["pixels"].shape == (0, 16, 16, 3)
    out = decode_set({"set_id": "y", "paths": [good], "captions": ["a", "b"]}, size=16)
    assert "1 images for 2 captions" in out["error"]


def test_laion_style_parquet_source_reads_through_ray(ray_local, tmp_path, dreambooth):
    blobs, captions = [], []
    for name in ("cat", "dog"):
        buf = io.BytesIO()
        Image.open(dreambooth / "images" / name / "00.jpg").resize((40, 40)).save(buf, format="PNG")
        blobs.append(buf.getvalue())
        captions.append(f"a photo of a {name}")
    pq.write_table(pa.table({"image": blobs, "caption": captions}), tmp_path / "part-0.parquet")
    data = JeDiDataSection(resolution=16, min_crop_scale=1.0)
    ds = source_dataset(DataSource(kind="captions", path=str(tmp_path)), data, seed=0)
    rows = sorted(ds.take_all(), key=lambda r: r["captions"][0])
    assert [r["captions"] for r in rows] == [["a photo of a cat"], ["a photo of a dog"]]
    assert all(np.asarray(r["pixels"]).shape == (1, 16, 16, 3) and r["error"] == "" for r in rows)
    assert all(r["set_id"].startswith("captions:") for r in rows)


def test_s3_dataset_source_reads_sets_written_by_core_s3(ray_local, tmp_path, dreambooth):
    from core.s3 import ImageSet, write_sets

    def image_set(name: str) -> ImageSet:
        images = [
            Image.open(dreambooth / "images" / name / f"0{i}.jpg").convert("RGB").resize((48, 48)) for i in range(3)
        ]
        return ImageSet(
            set_id=f"s3-{name}",
            category=name,
            subject=f"a {name}",
            images=images,
            masks=[np.ones((48, 48), dtype=bool)] * 3,
            prompts=[f"a {name} on the beach {i}" for i in range(3)],
        )

    write_sets([image_set("cat"), image_set("dog")], str(tmp_path / "s3"))
    data = JeDiDataSection(resolution=16, min_crop_scale=1.0)
    rows = sorted(
        source_dataset(DataSource(kind="s3", path=str(tmp_path / "s3")), data, seed=0).take_all(),
        key=lambda r: r["set_id"],
    )
    assert [r["set_id"] for r in rows] == ["s3-cat", "s3-dog"]
    assert all(r["error"] == "" and np.asarray(r["pixels"]).shape == (3, 16, 16, 3) for r in rows)
    assert rows[1]["captions"][2] == "a dog on the beach 2"
