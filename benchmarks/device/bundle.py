"""Build what the offline GPU host needs beside the repository: ``.device/site-<tier>.tar.xz`` and ``.device/shared``.

    python -m benchmarks.device.bundle core     # production, jedi
    python -m benchmarks.device.bundle ray      # + serving, datagen, pytest -m gpu (builds core too)

Why archives of an installed tree rather than wheels: the transfer budget is 64 MiB with the working
tree (~22 MiB), and Ray alone is a 79 MB wheel. Installing here lets us delete what never runs there
(Ray's Java jars, RLlib) and recompress with xz; the device then only unpacks (``setup.sh``), with no
pip and no network. Wheels are cp312 manylinux builds chosen by ``plan`` and cached in ``.device/wheels``,
so a second build downloads nothing. ``.device/<tier>-plan.json`` records every decision and why.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import parse_wheel_filename
from tqdm import tqdm

from benchmarks.device.plan import Budget, Dist, Plan, canonical, plan, read_image, read_pins
from benchmarks.device.tiers import ALIASES, TIERS
from core.logs import get_logger
from core.paths import REPO_ROOT

log = get_logger("device.bundle")
HERE = Path(__file__).resolve().parent
OUT = REPO_ROOT / ".device"
SHARED = REPO_ROOT.parent / "shared"
SHARED_NEEDED = ("dreambooth",)  # benchmarks and the evaluation GPU test read ../shared/dreambooth (1.2 MB)
# Ubuntu 24.04 (the image's Python 3.12.3) has glibc 2.39; pip matches manylinux tags exactly.
PLATFORMS = ["manylinux1_x86_64", "manylinux2014_x86_64"] + [f"manylinux_2_{n}_x86_64" for n in range(17, 40)]
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312"] + [
    a for p in PLATFORMS for a in ("--platform", p)
]
ALWAYS_STRIP = ("bin", "**/__pycache__")


def runs_on_device(wheel_name: str) -> bool:
    """Whether one of the wheel's tags fits CPython 3.12 on x86-64 manylinux (a sdist build may not)."""

    def fits(tag) -> bool:
        if tag.platform != "any" and tag.platform not in PLATFORMS:
            return False
        if tag.abi == "none":
            return tag.interpreter in ("py3", "cp312")
        if tag.abi == "abi3":  # the stable ABI of CPython 3.x runs on every later 3.y
            return tag.interpreter.startswith("cp3") and int(tag.interpreter[3:]) <= 12
        return tag.interpreter == tag.abi == "cp312"

    return any(fits(t) for t in parse_wheel_filename(wheel_name)[3])


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--no-input", "-q", *args], check=True)


def _wheel_key(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return canonical(name), version


def _metadata(wheel: Path) -> Dist:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        headers = HeaderParser().parsestr(z.read(meta).decode())
    return Dist(
        canonical(headers["Name"]),
        headers["Version"],
        tuple(headers.get_all("Requires-Dist") or ()),
        wheel.stat().st_size,
    )


class WheelCache:
    """cp312 wheels under ``.device/wheels``: downloaded once, built from the sdist where PyPI has no wheel."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.paths: dict[str, Path] = {}

    def _cached(self, name: str, version: str | None) -> Path | None:
        for w in sorted(self.root.glob("*.whl")):
            n, v = _wheel_key(w)
            if n == name and (version is None or v == version):
                return w
        return None

    def fetch(self, name: str, version: str | None) -> Dist:
        wheel = self._cached(name, version) or self._download(name, version)
        self.paths[name] = wheel
        return _metadata(wheel)

    def _download(self, name: str, version: str | None) -> Path:
        spec = f"{name}=={version}" if version else name
        log.info("downloading", package=spec, pinned=version is not None)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                _pip("download", "--no-deps", "--only-binary=:all:", *TARGET, "-d", tmp, spec)
            except subprocess.CalledProcessError:
                # No wheel on PyPI (groundingdino-py): build one, and accept it only if it is pure Python.
                _pip("wheel", "--no-deps", "-w", tmp, spec)
            (wheel,) = Path(tmp).glob("*.whl")
            if not runs_on_device(wheel.name):
                raise RuntimeError(f"{wheel.name} does not run on the device's CPython 3.12 x86-64")
            return Path(shutil.move(str(wheel), self.root / wheel.name))


def make_plans(tier: str, cache: WheelCache) -> list[Plan]:
    """The plans of ``tier`` and of every tier it builds on, base first."""
    pins = read_pins((REPO_ROOT / "constraints.txt").read_text())
    image = read_image((HERE / "image.txt").read_text())
    chain = []
    t = TIERS[tier]
    while t is not None:
        chain.insert(0, t)
        t = TIERS[t.base] if t.base else None
    plans: list[Plan] = []
    provided: dict[str, str] = {}
    for t in chain:
        p = plan(t, pins, image, cache.fetch, provided=provided, aliases=ALIASES)
        plans.append(p)
        provided.update({d.name: d.version for d in p.carried()})
    return plans


def strip_tree(site: Path, globs: tuple[str, ...]) -> int:
    """Delete ``globs`` (and console scripts, bytecode) under an installed tree; return the bytes removed."""
    removed = 0
    for pattern in (*ALWAYS_STRIP, *globs):
        for path in sorted(site.glob(pattern), reverse=True):
            if path.is_dir():
                removed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path)
            elif path.exists():
                removed += path.stat().st_size
                path.unlink()
    return removed


def build_archive(p: Plan, record: str, cache: WheelCache, out: Path) -> Path:
    """Install the plan's wheels into a scratch tree, strip it, and write ``site-<tier>.tar.xz``.

    The plan record travels inside the archive (``s3jedi-device-<tier>.json``) for ``check``.
    """
    archive = out / f"site-{p.tier}.tar.xz"
    stamp = out / f"site-{p.tier}.inputs.json"
    inputs = sorted(cache.paths[d.name].name for d in p.carried())
    inputs_record = json.dumps({"wheels": inputs, "strip": list(TIERS[p.tier].strip), "plan": record}, indent=1)
    if archive.exists() and stamp.exists() and stamp.read_text() == inputs_record:
        log.info("archive up to date", archive=str(archive.relative_to(REPO_ROOT)))
        return archive
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        site = Path(tmp) / "site"
        _pip(
            "install",
            "--no-deps",
            "--no-compile",
            "--only-binary=:all:",
            *TARGET,
            "--target",
            str(site),
            *[str(cache.paths[d.name]) for d in p.carried()],
        )
        removed = strip_tree(site, TIERS[p.tier].strip)
        (site / f"s3jedi-device-{p.tier}.json").write_text(record)
        files = sorted(f for f in site.rglob("*") if f.is_file() or f.is_symlink())
        partial = Path(tmp) / archive.name
        # xz -9: Ray's native binaries shrink ~30% more than the wheel's deflate (see decisions).
        with tarfile.open(partial, "w:xz", preset=9) as tar:
            for f in tqdm(files, desc=f"xz {p.tier}", unit="file", mininterval=5):
                tar.add(f, arcname=str(f.relative_to(site)), recursive=False)
        partial.replace(archive)
    stamp.write_text(inputs_record)
    log.info(
        "archive written",
        archive=archive.name,
        mib=round(archive.stat().st_size / 2**20, 1),
        stripped_mib=round(removed / 2**20, 1),
    )
    return archive


def copy_shared(out: Path) -> Path:
    """The ../shared material the benchmarks read; the device command copies it beside the repo copy."""
    dest = out / "shared"
    for name in SHARED_NEEDED:
        if not (SHARED / name).is_dir():
            raise FileNotFoundError(f"{SHARED / name} is missing: the device benchmarks read it")
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(SHARED / name, dest / name)
    return dest


def tree_bytes() -> int:
    """Bytes of the working tree a call sends: tracked and untracked-not-ignored files."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return sum((REPO_ROOT / n.decode()).stat().st_size for n in names if n and (REPO_ROOT / n.decode()).is_file())


def path_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _write_plan(p: Plan, out: Path) -> str:
    record = json.dumps(
        {"tier": p.tier, "conflicts": p.conflicts, "decisions": [d.__dict__ for d in p.decisions]}, indent=1
    )
    (out / f"{p.tier}-plan.json").write_text(record + "\n")
    for d in p.decisions:
        if d.action != "image":
            log.info(d.action, tier=p.tier, package=d.name, version=d.version, reason=d.reason)
    for c in p.conflicts:
        log.warning("version conflict", tier=p.tier, detail=c)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("tier", nargs="?", default="core", choices=sorted(TIERS))
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    cache = WheelCache(OUT / "wheels")
    plans = make_plans(args.tier, cache)
    carried = {}
    for p in plans:
        archive = build_archive(p, _write_plan(p, OUT), cache, OUT)
        carried[str(archive.relative_to(REPO_ROOT))] = archive.stat().st_size
    shared = copy_shared(OUT)
    carried[str(shared.relative_to(REPO_ROOT))] = path_bytes(shared)
    budget = Budget(tree_bytes(), carried)
    print(f"carry: {json.dumps(list(carried))}")
    for path, size in {"working tree": budget.tree, **carried}.items():
        print(f"  {size / 2**20:6.1f} MiB  {path}")
    print(f"  {budget.total / 2**20:6.1f} MiB  of {budget.limit / 2**20:.0f} MiB ({budget.left / 2**20:.1f} MiB left)")
    budget.check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
