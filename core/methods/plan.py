"""What a method trains, stage by stage: the data structure every method module returns.

A method is a sequence of stages over one global step counter (two-stage: steps 1-100 train the
token, 101-500 the UNet). One training recipe runs every plan; a stage names what it trains, its
optimizer, whether prior preservation applies, and the method's own plug-ins: extra loss terms and
what happens around the optimizer update (CoRe's context regularization and norm rescaling are one).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from core.config.finetune import NewTokenSection, PriorSection, UNetTuning
from core.config.training import OptimSection
from core.methods.tokens import LearnedToken

TOKENS, UNET, TEXT_ENCODER = "tokens", "unet", "text_encoder"


@dataclass
class StepState:
    """What a stage plug-in sees of one training step."""

    text_encoder: torch.nn.Module
    unet: torch.nn.Module
    tokenizer: Any
    token: LearnedToken | None
    """The learned token, for methods that add one."""
    subject_text: str
    """What stands for the subject in a prompt (the token's names, or the identifier)."""
    class_word: str
    noisy: torch.Tensor
    """The step's noisy latents of instance images ``(B, C, h, w)`` and their timesteps ``(B,)``
    (class images of prior preservation are not part of them)."""
    timesteps: torch.Tensor
    generator: torch.Generator
    """The step's own generator: a plug-in's draws are keyed by the step like the rest."""
    stage_step: int
    """1-based step within the stage."""


class StagePlugin(Protocol):
    def prepare(self, unet: torch.nn.Module) -> None:
        """Once, before the first step (e.g. capture cross-attention maps)."""
        ...

    def loss(self, state: StepState) -> tuple[torch.Tensor, dict[str, float]]:
        """A term added to the step's loss (inside its autocast), and metrics to log."""
        ...

    def around_update(self, state: StepState) -> AbstractContextManager[None]:
        """Wraps the optimizer update (gradients are final on entry, weights updated on exit)."""
        ...

    def settings(self) -> dict:
        """Its hyperparameters, JSON-able: part of what a resumed run must keep."""
        ...


@dataclass(frozen=True)
class Selection:
    """Checkpoint selection within a stage: every ``every`` steps of it (and at its end, when the
    stage is longer than ``every``) the weights are scored — ``images`` drawn with the subject's
    prompt, their mean DINO similarity to the subject's photos — and the best-scoring weights are the
    ones published. A stage of at most ``every`` steps that is not a multiple of it is not scored."""

    every: int
    images: int

    def due(self, stage_step: int, stage_steps: int) -> bool:
        if self.every <= 0 or stage_step <= 0:
            return False
        return stage_step % self.every == 0 or (stage_step == stage_steps and stage_steps > self.every)


@dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    optim: OptimSection
    trains: frozenset[str]  # of TOKENS, UNET, TEXT_ENCODER
    prior: PriorSection | None = None
    plugins: tuple[StagePlugin, ...] = ()
    select: Selection | None = None

    def settings(self) -> dict:
        return {
            "name": self.name,
            "steps": self.steps,
            "optim": self.optim.model_dump(mode="json"),
            "trains": sorted(self.trains),
            "prior": self.prior.model_dump(mode="json") if self.prior else None,
            "plugins": [p.settings() for p in self.plugins],
            "select": asdict(self.select) if self.select else None,
        }


@dataclass(frozen=True)
class MethodPlan:
    method: str
    identifier: str | None  # an existing token standing for the subject (DreamBooth's "sks")
    new_token: NewTokenSection | None  # a token added and learned (TI, two-stage, CoRe)
    prompt_template: str
    unet: UNetTuning | None  # how stages that train the UNet (and text encoder) do it
    stages: tuple[Stage, ...]
    captions: tuple[str, ...] = ()
    """Training captions of the photos, one drawn per photo and step (TI's list); empty: every photo
    is captioned with ``prompt_template``."""

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_of(self, step: int) -> int:
        """Index of the stage that runs global step ``step`` (1-based)."""
        end = 0
        for i, stage in enumerate(self.stages):
            end += stage.steps
            if step <= end:
                return i
        raise ValueError(f"step {step} is past the plan's {self.total_steps} steps")

    def stage_start(self, index: int) -> int:
        """Global steps done before stage ``index`` begins."""
        return sum(s.steps for s in self.stages[:index])

    def trained_by(self, index: int) -> frozenset[str]:
        """What stages ``0..index`` have trained: the parts a checkpoint or an export must hold."""
        return frozenset().union(*(s.trains for s in self.stages[: index + 1]))

    def class_images(self) -> int:
        return max((s.prior.num_images for s in self.stages if s.prior and s.steps), default=0)

    def selection_due(self, step: int) -> bool:
        """Whether global step ``step`` ends a scored checkpoint of its stage's selection."""
        index = self.stage_of(step)
        stage = self.stages[index]
        return stage.select is not None and stage.select.due(step - self.stage_start(index), stage.steps)

    def plugins(self) -> list[StagePlugin]:
        return [p for s in self.stages for p in s.plugins]

    def settings(self) -> dict:
        """Everything the plan decides, JSON-able (what a resumed run must not change unnoticed)."""
        return {
            "method": self.method,
            "identifier": self.identifier,
            "new_token": self.new_token.model_dump(mode="json") if self.new_token else None,
            "prompt_template": self.prompt_template,
            "unet": self.unet.model_dump(mode="json") if self.unet else None,
            "stages": [s.settings() for s in self.stages],
            "captions": list(self.captions),
        }
