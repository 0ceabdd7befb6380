"""What the experiment needs from the fine-tuning methods, without importing them.

Fine-tuning is training's work (``training.toyworld.finetuned``) and evaluation may not import
training, so the experiment takes a *finetuner* — a callable that fine-tunes the novel subjects and
returns something shaped like ``FinetunedSubjects`` — and ``s3jedi toyworld eval`` (in ``cluster``,
the one package that sees both apps) passes training's. The experiment then scores the fine-tuned
rows exactly like the others: one image per trial, the trial's target scene and seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from core.config import S3JediConfig
from core.toyworld.world import Subject


class FinetunedSubjects(Protocol):
    scenes: dict[str, list[str]]
    """subject slug → the scenes of the renders it was fine-tuned on."""
    seconds: dict[str, float]
    """method → wall time of fine-tuning every subject."""

    def prompt(self, method: str, scene: str) -> str:
        """The prompt template asking for the subject in ``scene`` (``{0}`` = its token, ``{1}`` = class)."""
        ...

    def sample(
        self, method: str, subject: Subject, scenes: list[str], seeds: list[int], *, steps: int, guidance_scale: float
    ) -> list[np.ndarray]:
        """One H×W×3 uint8 image of ``subject`` per (scene, seed)."""
        ...


Finetuner = Callable[[S3JediConfig, list[Subject], int], FinetunedSubjects]
"""``(config, novel subjects, image side) → the subjects fine-tuned with toyworld.eval.finetune_methods``."""
