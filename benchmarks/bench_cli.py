"""Start-up of the ``s3jedi`` command: ``s3jedi --help`` and ``s3jedi config show``, each a fresh process.

Baseline (same run): ``python -c pass``, the interpreter's own start-up. The CLI imports its heavy
libraries (torch, diffusers, transformers, Ray) inside the commands that use them, so listing the
commands costs the CLI framework, the typed configs and pyarrow, not a second of torch; the target
is ``--help`` under 1.5 s. Each sample is a new process, as a user starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.common import timeit

S3JEDI = os.path.join(os.path.dirname(sys.executable), "s3jedi")
TARGET_HELP_S = 1.5


def _run(*argv: str):
    return lambda: subprocess.run(argv, check=True, capture_output=True)


def run() -> dict:
    baseline = timeit(_run(sys.executable, "-c", "pass"), repeat=5)
    commands = {
        "s3jedi --help": timeit(_run(S3JEDI, "--help"), repeat=5),
        "s3jedi config show": timeit(_run(S3JEDI, "config", "show"), repeat=5),
        "import cluster.cli": timeit(_run(sys.executable, "-c", "import cluster.cli"), repeat=5),
    }
    result = {"baseline_python_pass": baseline, "commands": {}}
    for name, t in commands.items():
        ratio = t["median_s"] / baseline["median_s"]
        result["commands"][name] = {**t, "ratio_to_python": ratio}
        print(f"   {name:22s} {t['median_s']:6.2f} s  ({ratio:5.1f}x python -c pass)")
    help_s = commands["s3jedi --help"]["median_s"]
    result["help_under_target"] = help_s < TARGET_HELP_S
    print(f"   s3jedi --help {'meets' if result['help_under_target'] else 'misses'} the {TARGET_HELP_S} s target")
    return result
