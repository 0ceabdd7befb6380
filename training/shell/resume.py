"""Resuming only what was asked for: a run's checkpoints record the settings that decide its weights,
and a rerun under the same name that changes one of them is refused before any worker starts.

Each recipe says which settings decide training (``Recipe.settings``: learning rates, schedules,
steps, data sources, the method's plan; not where the run is stored, how often it logs or how many
workers it has). The message names every changed field and the two ways out: a new run name, or
``--set train.resume=force`` for a deliberate change (more steps, a lower learning rate from here on).
Checkpoints written before settings were recorded resume as they always did.
"""

from __future__ import annotations

import json

from core.logs import get_logger
from training.shell import checkpoint as ckpt

log = get_logger("train.resume")
SHOWN = 8


def flatten(value, prefix: str = "") -> dict[str, object]:
    """``{"optim": {"lr": 1}}`` → ``{"optim.lr": 1}``; list items are numbered (``sources[0].path``)."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def changed_fields(stored: dict, current: dict) -> list[str]:
    """Dotted names of the settings that differ (JSON-normalised, so tuples equal lists)."""
    old, new = flatten(json.loads(json.dumps(stored))), flatten(json.loads(json.dumps(current)))
    return sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))


def check_resume(run_dir: str, settings: dict, run_field: str, policy: str) -> None:
    """Refuse (``ValueError``) to resume the run at ``run_dir`` with other ``settings`` than its newest
    checkpoint records, unless ``policy`` is ``force``."""
    found = ckpt.on_storage(run_dir, complete_only=False)
    if found is None:
        return
    path, meta = found
    stored = meta.get("settings")
    if stored is None:
        log.warning("the checkpoint records no settings (written by an earlier version); not compared", path=path)
        return
    changed = changed_fields(stored, settings)
    if not changed:
        return
    names = ", ".join(changed[:SHOWN]) + (f" and {len(changed) - SHOWN} more" if len(changed) > SHOWN else "")
    if policy == "force":
        log.warning("resuming with changed settings (train.resume=force)", step=meta.get("step"), changed=names)
        return
    raise ValueError(
        f"{run_field}.name: run {run_dir} has a checkpoint at step {meta.get('step')} trained with other "
        f"settings ({names}); start a new run (--set {run_field}.name=NEW) or resume with the change "
        "(--set train.resume=force)"
    )
