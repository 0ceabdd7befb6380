"""Where s3jedi keeps things on a machine.

Everything that is built or cached (the tiny model zoo, datasets made by the demo) lives under one
home directory so that a user can see, move or delete it in one place. ``$S3JEDI_HOME`` wins; the
default follows the XDG cache convention because the contents can always be rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def s3jedi_home() -> Path:
    env = os.environ.get("S3JEDI_HOME")
    if env:
        return Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache) / "s3jedi").resolve()


def zoo_dir(profile: str, home: Path | None = None) -> Path:
    return (home or s3jedi_home()) / "zoo" / profile
