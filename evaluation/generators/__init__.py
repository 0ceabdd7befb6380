"""The generators a benchmark run can evaluate, selected by ``evaluation.generation.method``."""

from __future__ import annotations

from core.config import S3JediConfig
from evaluation.generators.base_model import BaseModelGenerator
from evaluation.generators.finetuned import FinetunedGenerator
from evaluation.generators.interface import Generator, SubjectInput
from evaluation.generators.jedi import JeDiGenerator

GENERATORS = {"jedi": JeDiGenerator, "base": BaseModelGenerator, "finetuned": FinetunedGenerator}

__all__ = ["GENERATORS", "Generator", "SubjectInput", "make_generator"]


def make_generator(cfg: S3JediConfig, device: str = "cpu") -> Generator:
    return GENERATORS[cfg.evaluation.generation.method](cfg, device)
