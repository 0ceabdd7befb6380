"""What the gateway hands to a model replica, and what comes back.

Jobs are plain dataclasses of already validated, already decoded values (references are uint8 arrays
at the output size), so a model replica never sees untrusted bytes and never spends accelerator
time on decoding or PNG encoding.

Seeds: image ``k`` of a request (prompt-major: prompt ``i``, image ``j`` → ``k = i·n + j``) is drawn
from its own generator seeded with ``seed + k``. An image therefore depends only on its own request,
whichever other requests share the batch, and a client can reproduce one image from its seed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from core.jedi.guidance import DEFAULT_GUIDANCE, DEFAULT_IMAGE_GUIDANCE_SCALE, DEFAULT_JOINT_TARGETS

SEED_MODULUS = 2**53
"""Image seeds wrap below 2^53, like request seeds (``serving.schemas.MAX_SEED``)."""


@dataclass
class GenerationJob:
    prompts: list[str]
    images_per_prompt: int
    steps: int
    guidance_scale: float | None
    """Text guidance; None for JeDi's paper guidance, whose one scale is ``image_guidance_scale``."""
    negative_prompt: str
    seed: int
    height: int
    width: int

    @property
    def num_images(self) -> int:
        return len(self.prompts) * self.images_per_prompt

    def image_prompts(self) -> list[str]:
        return [p for p in self.prompts for _ in range(self.images_per_prompt)]

    def image_seeds(self) -> list[int]:
        return [(self.seed + k) % SEED_MODULUS for k in range(self.num_images)]

    def batch_key(self) -> tuple:
        """Jobs with equal keys run in one pipeline call (same tensor shapes and scalar settings)."""
        return (self.steps, self.height, self.width, self.guidance_scale)


@dataclass
class GenerateJob(GenerationJob):
    """Text-to-image, optionally with a fine-tuned subject (prompts as the client wrote them, ``{0}`` and
    ``{1}`` included: the replica renders them with the subject's tokens and class word)."""

    subject_id: str | None = None

    def batch_key(self) -> tuple:
        return (*super().batch_key(), self.subject_id)


@dataclass
class PersonalizeJob(GenerationJob):
    """Finetuning-free personalization: references (H×W×3 uint8 at the output size) + captions."""

    references: list[np.ndarray] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    guidance: str = DEFAULT_GUIDANCE
    image_guidance_scale: float = DEFAULT_IMAGE_GUIDANCE_SCALE
    joint_targets: bool = DEFAULT_JOINT_TARGETS

    def batch_key(self) -> tuple:
        # JeDiPipeline takes one reference set per request, so jobs about different subjects share a
        # call; the reference count (set size) and the call's scalars must match.
        return (
            *super().batch_key(),
            len(self.references),
            self.guidance,
            self.image_guidance_scale,
            self.joint_targets,
            self.negative_prompt,
        )


@dataclass
class Drawn:
    """One job's part of a pipeline call: its images and the prompts the model saw."""

    images: list[np.ndarray]
    prompts: list[str]
    tto_steps: int = 0


@dataclass
class JobResult:
    images: list[np.ndarray]
    """H×W×3 uint8, prompt-major."""
    prompts: list[str]
    seeds: list[int]
    batch_size: int
    """How many requests the ``@serve.batch`` call that ran this job collected."""
    run_s: float
    tto_steps: int = 0
    """Test-time optimization steps the subject's method ran per prompt before drawing (0 = none)."""


@dataclass
class JobFailure:
    """A request the model could not run, returned (not raised) so the gateway maps it to a status."""

    status: int
    field: str
    message: str


@dataclass
class Ticket:
    """A job waiting in, or running in, a batch. ``cancelled`` is set from the event loop when the
    caller goes away and read by the pipeline's step callback in the worker thread."""

    job: GenerationJob
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    """Set when its batch begins; until then it counts as waiting (queue-length metric)."""
