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


def write_clip(path, frames: int, fps: int = 4) -> list[tuple[int, int, int]]:
    """An MPEG-4 clip whose frame i is one flat colour; returns the colours (the data, not our code)."""
    import av

    colours = [(i * 20, 255 - i * 20, 100) for i in range(frames)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for colour in colours:
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), colour, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return colours


def test_video_clips_become_frame_sets_at_distinct_keyed_times(tmp_path):
    from training.jedi.video import video_clips

    (tmp_path / "clips").mkdir()
    colours = write_clip(tmp_path / "clips" / "red_kite.mp4", 12)
    (tmp_path / "clips" / "red_kite.txt").write_text("a red kite in the wind\n")
    write_clip(tmp_path / "clips" / "short.mp4", 3)
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows = {r["set_id"]: r for r in video_clips(tmp_path / "clips", "a video of {name}")}
    assert sorted(rows) == ["video:broken.mp4", "video:red_kite.mp4", "video:short.mp4"]

    out = decode_set(rows["video:red_kite.mp4"], size=16, seed=5, frames=4)
    assert out["error"] == "" and out["pixels"].shape == (4, 16, 16, 3)
    assert out["captions"] == ["a red kite in the wind"] * 4
    # Each sampled frame is one of the clip's frames, four different ones, in time order.
    picked = [int(np.argmin([np.abs(p[8, 8].astype(int) - c).sum() for c in colours])) for p in out["pixels"]]
    assert len(set(picked)) == 4 and picked == sorted(picked)
    again = decode_set(rows["video:red_kite.mp4"], size=16, seed=5, frames=4)
    np.testing.assert_array_equal(out["pixels"], again["pixels"])
    other = decode_set(rows["video:red_kite.mp4"], size=16, seed=6, frames=4)
    assert not np.array_equal(out["pixels"], other["pixels"]), "times are drawn from the seed and the clip"

    short = decode_set(rows["video:short.mp4"], size=16, seed=5, frames=4)
    assert short["error"] == "too-short: 3 frames, 4 needed" and short["pixels"].shape == (0, 16, 16, 3)
    broken = decode_set(rows["video:broken.mp4"], size=16, seed=5, frames=4)
    assert broken["error"].startswith("corrupt: ")


def test_video_source_through_ray_counts_its_skips_by_reason(ray_local, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.jedi.batches import SourceCursor, endless_rows

    (tmp_path / "v").mkdir()
    for name in ("a", "b"):
        write_clip(tmp_path / "v" / f"{name}.mp4", 10)
    write_clip(tmp_path / "v" / "c.mp4", 2)
    pq.write_table(
        pa.table({"path": ["v/a.mp4", "v/b.mp4", "v/c.mp4"], "caption": ["clip a", "clip b", "clip c"]}),
        tmp_path / "clips.parquet",
    )
    data = JeDiDataSection(resolution=16, min_crop_scale=1.0, max_set_size=4)
    ds = source_dataset(DataSource(kind="video", path=str(tmp_path / "clips.parquet"), frames=4), data, seed=0)

    class Shard:
        def iter_rows(self):
            yield from ds.iter_rows()

    cursor = SourceCursor("source0", "video", path="clips.parquet")
    rows = endless_rows(Shard(), cursor)
    usable = {next(rows)["set_id"] for _ in range(4)}
    assert usable == {"video:v/a.mp4", "video:v/b.mp4"}
    assert cursor.skip_reasons["too-short"] >= 1 and cursor.metrics()["skipped/source0/too-short"] >= 1
    with pytest.raises(ValueError, match=r"sources\[0\].frames: 2 frames per clip cannot fill sets of max_set_size 4"):
        JeDiDataSection(sources=[DataSource(kind="video", path="x", frames=2)])
