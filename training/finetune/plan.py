"""What a method trains, stage by stage: the data structure every method module returns.

A method is a sequence of stages over one global step counter (two-stage: steps 1-100 train the
token, 101-500 the UNet). One training loop runs every plan; a stage names what it trains, its
optimizer, and whether prior preservation or CoRe's context regularization applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config.finetune import CoReSection, NewTokenSection, PriorSection, UNetTuning
from core.config.training import OptimSection

TOKENS, UNET, TEXT_ENCODER = "tokens", "unet", "text_encoder"


@dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    optim: OptimSection
    trains: frozenset[str]  # of TOKENS, UNET, TEXT_ENCODER
    prior: PriorSection | None = None
    context_reg: CoReSection | None = None


@dataclass(frozen=True)
class MethodPlan:
    method: str
    identifier: str | None  # an existing token standing for the subject (DreamBooth's "sks")
    new_token: NewTokenSection | None  # a token added and learned (TI, two-stage, CoRe)
    prompt_template: str
    unet: UNetTuning | None  # how stages that train the UNet (and text encoder) do it
    stages: tuple[Stage, ...]

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
