"""Local paths and URIs behind one interface."""

from __future__ import annotations

from core import storage
from core.paths import REPO_ROOT, WORKDIR_ENV


def test_relative_paths_are_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(WORKDIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert storage.resolve("runs/x") == str(tmp_path / "runs" / "x")
    assert storage.resolve("s3://bucket/runs") == "s3://bucket/runs"
    # a file s3jedi ships is found in the installation unless the working directory has its own
    assert storage.local_path("assets/toyworld/jedi") == REPO_ROOT / "assets" / "toyworld" / "jedi"
    assert storage.local_path("assets/nothing-shipped") == tmp_path / "assets" / "nothing-shipped"
    assert storage.local_path("../shared/dreambooth") == (REPO_ROOT / ".." / "shared" / "dreambooth").resolve()
    assert storage.local_path("runs") == tmp_path / "runs"  # outputs stay here, even where the checkout has one
    (tmp_path / "assets" / "toyworld" / "jedi").mkdir(parents=True)
    assert storage.local_path("assets/toyworld/jedi") == tmp_path / "assets" / "toyworld" / "jedi"
    # Ray workers take the driver's directory, whatever their own (Ray Train moves them)
    monkeypatch.setenv(WORKDIR_ENV, str(tmp_path / "driver"))
    assert storage.resolve("runs") == str(tmp_path / "driver" / "runs")
    assert storage.join("s3://bucket/runs/", "a", "b") == "s3://bucket/runs/a/b"


def test_upload_dir_and_exists(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello")
    dest = tmp_path / "dest" / "nested"
    assert not storage.exists(dest)
    storage.upload_dir(src, dest)
    assert (dest / "sub" / "f.txt").read_text() == "hello" and storage.exists(dest)
