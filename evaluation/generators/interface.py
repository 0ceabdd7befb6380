"""What the benchmark runner needs from a generator, and nothing more.

A generator draws one method: it turns (subject, prompt templates, seeds) into images. It decides what
fills the ``{0}`` token of the benchmark's templates (nothing for finetuning-free methods, the
subject's learned token for a fine-tuned subject) and which of the subject's photos it looks at.
Subjects travel with their photos as bytes, so an actor on any node of a cluster can generate
without a shared disk.

Constructing a generator loads nothing: the driver builds one per method to check the subjects and
describe the settings before any model loads; the generation actors build their own, and the models
load on the first ``generate``.

Adding a finetuning-free generator is one module with a class following ``Generator`` plus one
entry in ``evaluation.generators.FINETUNING_FREE``; a fine-tuning method needs none (every method of
the registry is drawn through the subject contract by ``FinetunedGenerator``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class SubjectInput:
    name: str
    class_name: str
    photos: tuple[tuple[str, bytes], ...]
    """(file name, encoded file) of every real photo, sorted by name."""

    def images(self, count: int | None = None) -> list[Image.Image]:
        """The first ``count`` photos (all by default), decoded as RGB."""
        return [Image.open(io.BytesIO(data)).convert("RGB") for _, data in self.photos[:count]]


class Generator(Protocol):
    method: str

    def prompt(self, subject: SubjectInput, template: str) -> str:
        """The prompt the model sees for a benchmark template (``{0}`` = the subject's token, ``{1}`` =
        its class), recorded with every image."""
        ...

    def inputs(self, subject: SubjectInput) -> list[str]:
        """File names of the photos the generator conditions on (recorded per image). Called in the
        driver for every subject before any model loads, so a subject it cannot handle is a
        one-line error naming the setting (ValueError), not a failed actor."""
        ...

    def load(self, subject: SubjectInput) -> None:
        """Load what drawing ``subject`` needs (called before each timed ``generate``, so seconds per
        image leave model loading out)."""
        ...

    def generate(self, subject: SubjectInput, templates: list[str], seeds: list[int]) -> list[Image.Image]:
        """One image per (template, seed); image i depends only on templates[i] and seeds[i]."""
        ...

    def describe(self) -> dict:
        """Model and sampling settings, JSON-able: recorded with the run and part of its resume
        fingerprint (known before any model is loaded)."""
        ...


def seeded(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per image: the same seed gives the same initial noise on CPU and GPU and
    whatever else is in the batch."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]
