"""Building the tiny zoo: every family's stand-in written under ``$S3JEDI_HOME/zoo/tiny``.

Builds are idempotent (a family whose files still match the manifest checksums is skipped),
atomic (written to a temporary sibling and renamed, so a killed build never leaves a half model
that looks complete) and serialized by a file lock (tests and Ray workers may build concurrently).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.paths import zoo_dir
from core.zoo.registry import families, get

MANIFEST = "manifest.json"
BUILDABLE_PROFILES = ("tiny",)


@dataclass(frozen=True)
class BuildResult:
    family: str
    path: Path
    status: str  # "built" | "up to date"
    seconds: float


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"families": {}}


def is_built(family: str, root: Path) -> bool:
    """True when the family's directory exists and every file matches the manifest."""
    entry = read_manifest(root)["families"].get(family)
    target = root / family
    return bool(entry) and target.is_dir() and checksums(target) == entry["files"]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(
    profile: str = "tiny",
    names: Iterable[str] | None = None,
    home: Path | None = None,
    force: bool = False,
) -> list[BuildResult]:
    if profile not in BUILDABLE_PROFILES:
        raise ValueError(
            f"profile: cannot build {profile!r}; buildable profiles: {', '.join(BUILDABLE_PROFILES)} "
            "(production checkpoints are downloaded by their libraries, not built)"
        )
    root = zoo_dir(profile, home)
    wanted = list(names) if names else sorted(families())
    for name in wanted:
        get(name)  # unknown names fail before anything is written
    results = []
    with _locked(root):
        manifest = read_manifest(root)
        manifest["profile"] = profile
        for name in wanted:
            target = root / name
            if not force and is_built(name, root):
                results.append(BuildResult(name, target, "up to date", 0.0))
                continue
            start = time.perf_counter()
            tmp = root / f".{name}.building"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            get(name).build_tiny(tmp)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            seconds = time.perf_counter() - start
            manifest["families"][name] = {"files": checksums(target)}
            (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            results.append(BuildResult(name, target, "built", seconds))
    return results
