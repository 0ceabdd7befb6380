"""Local paths and URIs behind one interface."""

from __future__ import annotations

from core import storage
from core.paths import REPO_ROOT


def test_relative_paths_are_anchored_at_the_repo_root():
    assert storage.resolve("runs/x") == str(REPO_ROOT / "runs" / "x")
    assert storage.resolve("s3://bucket/runs") == "s3://bucket/runs"
    assert storage.join("s3://bucket/runs/", "a", "b") == "s3://bucket/runs/a/b"


def test_upload_dir_and_exists(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello")
    dest = tmp_path / "dest" / "nested"
    assert not storage.exists(dest)
    storage.upload_dir(src, dest)
    assert (dest / "sub" / "f.txt").read_text() == "hello" and storage.exists(dest)
