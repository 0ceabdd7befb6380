"""The method registry: ``--method`` name → the plan its module builds from ``finetune.<method>``."""

from __future__ import annotations

from dataclasses import replace

from core.config.finetune import METHODS, FinetuneSection
from training.finetune import core_method, dreambooth, textual_inversion, two_stage
from training.finetune.plan import MethodPlan


def method_plan(cfg: FinetuneSection, method: str) -> MethodPlan:
    if method == "dreambooth":
        return dreambooth.plan(cfg.dreambooth)
    if method == "ti":
        return textual_inversion.plan(cfg.ti)
    if method == "two-stage":
        return two_stage.plan(cfg.two_stage)
    if method == "core":
        return core_method.plan(cfg.core)
    if method == "selfdistill":  # self-distillation's student: DreamBooth on photos + gold samples
        return replace(dreambooth.plan(cfg.dreambooth), method="selfdistill")
    raise ValueError(f"--method: {method!r} is not one of {', '.join(METHODS)}")


def parse_methods(text: str) -> list[str]:
    """``dreambooth`` or ``ti,core``: every name known, none twice."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown:
        raise ValueError(f"--method: {text!r}: choose from {', '.join(METHODS)} (comma-separated for several)")
    return list(dict.fromkeys(names))
