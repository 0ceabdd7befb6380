"""Local paths and object-store URIs behind one interface (pyarrow filesystems).

Datasets, checkpoints, exports and the model store may live on a laptop disk, an NFS mount or
``s3://``/``gs://``. Relative local paths are taken from the working directory of the command
(``core.paths.workdir``); one that names a file s3jedi ships and is not there is the shipped one.
A job shipped with ``ray job submit --working-dir .`` runs in its copy of the checkout, so a config
run from the checkout's root means the same place locally and on a cluster.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

from core.paths import REPO_ROOT, SHIPPED, workdir


def is_uri(path: str) -> bool:
    return "://" in path


def local_path(path: str | Path) -> Path:
    """A local path; relative ones are taken from the working directory, or from the installation
    for a shipped file (``core.paths.SHIPPED``) the working directory does not have."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    here = workdir() / p
    shipped = any(p.parts[: len(prefix)] == prefix for prefix in SHIPPED)
    if shipped and not here.exists() and (REPO_ROOT / p).exists():
        return (REPO_ROOT / p).resolve()
    return here.resolve()


def resolve(path: str | Path) -> str:
    """The absolute form of ``path``: URIs unchanged, local paths as ``local_path`` takes them."""
    text = str(path)
    return text if is_uri(text) else str(local_path(text))


def filesystem(path: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    text = resolve(path)
    if is_uri(text):
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), text


def join(base: str | Path, *parts: str) -> str:
    text = resolve(base)
    return "/".join([text.rstrip("/"), *parts]) if is_uri(text) else str(Path(text, *parts))


def exists(path: str | Path) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def upload_dir(local_dir: Path, dest: str | Path) -> str:
    """Copy a local directory tree to ``dest`` (local or URI); returns the resolved destination."""
    fs, p = filesystem(dest)
    fs.create_dir(p, recursive=True)
    pafs.copy_files(str(local_dir), p, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return resolve(dest)
