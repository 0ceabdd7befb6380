"""Device-side check, run by ``setup.sh`` before any benchmark: does the unpacked bundle work there?

    python3 -m benchmarks.device.check core|ray [SITE]     # SITE: where setup.sh unpacked (/tmp/site)

Prints the interpreter, torch and GPU, the version of every package the plan took from the image
(the image list gives few versions), every requirement of a carried package that the environment
fails, and imports the tier's modules. Exit 1 if an import fails: a run then ends in seconds
instead of minutes into a benchmark. Unmet version requirements are printed, not fatal: a
requirement is often stricter than what our code uses, and the imports decide.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import traceback
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks.device.plan import DEVICE_ENV
from benchmarks.device.tiers import ALIASES, TIERS


def plan_record(site: Path, tier: str) -> dict:
    return json.loads((site / f"s3jedi-device-{tier}.json").read_text())


def installed() -> dict[str, metadata.Distribution]:
    """Every distribution on sys.path, the first one winning as it does at import time."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    for name, provider in ALIASES.items():  # opencv-python is satisfied by the image's headless build
        if provider in found:
            found.setdefault(name, found[provider])
    return found


def unmet(dist: metadata.Distribution, dists: dict[str, metadata.Distribution], dropped: set[str]) -> list[str]:
    """Requirements of ``dist``'s base install that the environment fails (dropped packages excluded)."""
    out = []
    for line in dist.requires or ():
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({**DEVICE_ENV, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in dropped:
            continue
        have = dists.get(name)
        if have is None:
            out.append(f"{req} (missing)")
        elif req.specifier and not req.specifier.contains(have.version, prereleases=True):
            out.append(f"{req} (have {have.version})")
    return out


def main(argv: list[str]) -> int:
    tier = argv[0] if argv else "core"
    chain = [tier] if TIERS[tier].base is None else [TIERS[tier].base, tier]
    site = Path(argv[1] if len(argv) > 1 else "/tmp/site")
    import torch

    print(f"python {platform.python_version()} at {sys.executable}; torch {torch.__version__}", end="")
    print(f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no CUDA GPU")
    dists = installed()
    failed = []
    for name in chain:
        record = plan_record(site, name)
        dropped = {d["name"] for d in record["decisions"] if d["action"] == "drop"}
        from_image = sorted(
            f"{d['name']}={dists[d['name']].version}" if d["name"] in dists else f"{d['name']}=MISSING"
            for d in record["decisions"]
            if d["action"] == "image"
        )
        print(f"[{name}] from the image: {' '.join(from_image)}")
        for d in record["decisions"]:
            if d["action"] != "carry":
                continue
            dist = dists.get(d["name"])
            if dist is None or dist.version != d["version"]:
                print(f"[{name}] CARRIED {d['name']} {d['version']} is not what imports: {dist and dist.version}")
                continue
            for problem in unmet(dist, dists, dropped):
                print(f"[{name}] UNMET {d['name']} requires {problem}")
        for module in TIERS[name].imports:
            try:
                importlib.import_module(module)
            except Exception:
                failed.append(module)
                print(f"[{name}] IMPORT FAILED {module}\n{traceback.format_exc(limit=-3)}")
    print("check: " + (f"FAILED imports {failed}" if failed else "all imports work"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
