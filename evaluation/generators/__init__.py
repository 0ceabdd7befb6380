"""The generators a benchmark run draws with, one per method of ``evaluation.methods``."""

from __future__ import annotations

from core.config import S3JediConfig
from evaluation.generators.base_model import BaseModelGenerator
from evaluation.generators.finetuned import FinetunedGenerator
from evaluation.generators.interface import Generator, SubjectInput
from evaluation.generators.jedi import JeDiGenerator

FINETUNING_FREE = {"jedi": JeDiGenerator, "base": BaseModelGenerator}

__all__ = ["FINETUNING_FREE", "Generator", "SubjectInput", "make_generator"]


def make_generator(cfg: S3JediConfig, method: str, device: str = "cpu", store: str | None = None) -> Generator:
    """The generator of ``method``; a fine-tuning method's subjects come from ``store`` (where the run
    fine-tuned them) or ``evaluation.finetuned.store``. Loads nothing until it generates."""
    if method in FINETUNING_FREE:
        return FINETUNING_FREE[method](cfg, method, device)
    return FinetunedGenerator(cfg, method, device, store)
