"""Example reference sets that the demo page offers, so a visitor can try personalization at once.

``serving.examples: toyworld`` offers ToyWorld's novel subjects (``core.toyworld.world``: shape-colour
pairs held out of every training set), each rendered in a few scenes, with prompts of the other
scenes that never name the subject (``a thing on the sea``). Served with the ToyWorld checkpoints
(``configs/toyworld.yaml``), a generated image shows the subject only if JeDi carried its identity
over from the references, and the ToyWorld oracle can check that it did.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

from core.toyworld.dataset import item_rng
from core.toyworld.render import random_layout, render
from core.toyworld.world import SCENES, caption, novel_subjects
from serving.schemas import ExampleSet

TOYWORLD_REFERENCES = 3


def png_data_url(image) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def toyworld_examples(seed: int, size: int, max_references: int) -> list[ExampleSet]:
    """Each novel subject in ``min(3, max_references)`` random scenes (renders of ``size`` px, drawn
    from ``seed``), with a generic prompt for each remaining scene."""
    count = min(TOYWORLD_REFERENCES, max_references)
    sets = []
    for subject in novel_subjects():
        rng = item_rng(seed, f"serving-examples/{subject.slug}", 0)
        scenes = [list(SCENES)[i] for i in rng.permutation(len(SCENES))]
        shown, others = scenes[:count], scenes[count:]
        sets.append(
            ExampleSet(
                name=subject.name,
                description=f"ToyWorld novel subject (in no training set), seen on the {', '.join(shown)}; "
                "the prompts never name it",
                references=[png_data_url(render(subject, s, random_layout(rng, size), size)[0]) for s in shown],
                prompts=[caption(subject, s, generic=True) for s in others],
            )
        )
    return sets


def load_examples(kind: str | None, seed: int, size: int, max_references: int) -> list[ExampleSet]:
    """``serving.examples``: the sets to offer at ``size`` px (the personalizer's native size)."""
    if kind == "toyworld":
        return toyworld_examples(seed, size, max_references)
    return []
