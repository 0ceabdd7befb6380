"""Where s3jedi keeps things on a machine, and where a relative path in a config points.

Everything that is built or cached (the tiny model zoo, datasets made by the demo) lives under one
home directory so that a user can see, move or delete it in one place. ``$S3JEDI_HOME`` wins; the
default follows the XDG cache convention because the contents can always be rebuilt.

``REPO_ROOT`` is the directory that holds the packages: the checkout, or ``site-packages`` of an
installed wheel, which ships ``configs/``, ``manifests/`` and ``assets/`` beside them.

A relative path in a config is taken from the directory the command runs in (``workdir``), as
users expect; a submitted job runs in its shipped copy of the checkout. Ray workers get the
driver's directory in ``S3JEDI_WORKDIR`` (``core.ray_runtime.init_ray``): Ray Train moves its
workers into their run directory.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKDIR_ENV = "S3JEDI_WORKDIR"
SHIPPED = (("assets",), ("configs",), ("manifests",), ("datagen",), ("..", "shared"))
"""Where the files s3jedi ships live (and, beside a checkout, the shared DreamBooth material the
defaults name): a relative path under one of them that the working directory does not have is found
in the installation, so ``assets/toyworld/jedi`` or ``../shared/dreambooth`` work from anywhere."""


def workdir() -> Path:
    return Path(os.environ.get(WORKDIR_ENV) or os.getcwd())


def s3jedi_home() -> Path:
    env = os.environ.get("S3JEDI_HOME")
    if env:
        return Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache) / "s3jedi").resolve()


def zoo_dir(profile: str, home: Path | None = None) -> Path:
    return (home or s3jedi_home()) / "zoo" / profile
