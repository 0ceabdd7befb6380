"""The trials of the ToyWorld experiment: novel subjects, their references, the scene to draw them in.

A trial is (novel subject, seed index). From its own generator it draws a permutation of the scenes —
the first ``max_refs`` hold the references, the next one is the target scene, so the target scene is
never a reference scene — a layout per image, and a *decoy*: another novel subject whose references
use exactly the same scenes and layouts. The loss gap compares the right and the decoy references
with everything else equal. The prompt names only the scene and the generic word, so nothing but the
references can say which subject to draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.config.toyworld import SPLITS
from core.toyworld.dataset import item_rng
from core.toyworld.render import Layout, random_layout, render
from core.toyworld.world import SCENES, Subject, caption, novel_subjects


@dataclass(frozen=True)
class Trial:
    subject: Subject
    index: int
    seed: int
    """Seeds the sampler noise and the loss-gap noise of this trial (shared by every condition)."""
    ref_scenes: tuple[str, ...]
    ref_layouts: tuple[Layout, ...]
    target_scene: str
    target_layout: Layout
    decoy: Subject
    other_scenes: tuple[str, ...] = ()
    """The scenes neither a reference nor the target uses (extra targets of the joint-target rows)."""

    @property
    def id(self) -> str:
        return f"{self.subject.slug}-{self.index}"

    @property
    def prompt(self) -> str:
        return caption(self.subject, self.target_scene, generic=True)

    def scenes(self, k: int, images: int) -> list[str]:
        """The scenes of ``images`` targets with ``k`` references: the prompt's scene first, then scenes
        none of the ``k`` references shows."""
        scenes = [self.target_scene, *self.ref_scenes[k:], *self.other_scenes][:images]
        if len(scenes) < images:
            raise ValueError(f"images: {images} targets with {k} references need {images + k} scenes")
        return scenes

    def prompts(self, k: int, images: int = 1) -> list[str]:
        return [caption(self.subject, scene, generic=True) for scene in self.scenes(k, images)]

    def references(self, k: int, size: int, decoy: bool = False) -> list[Image.Image]:
        """The first ``k`` references, of the subject or (``decoy``) of the decoy in the same places."""
        if not 1 <= k <= len(self.ref_scenes):
            raise ValueError(f"references: k must lie in [1, {len(self.ref_scenes)}], got {k}")
        who = self.decoy if decoy else self.subject
        return [
            Image.fromarray(render(who, scene, layout, size)[0])
            for scene, layout in zip(self.ref_scenes[:k], self.ref_layouts[:k], strict=True)
        ]

    def target(self, size: int) -> Image.Image:
        """The subject in the target scene: what the loss is measured on."""
        return Image.fromarray(render(self.subject, self.target_scene, self.target_layout, size)[0])


def make_trials(
    seed: int, per_subject: int, max_refs: int, size: int, subjects: int | None = None, split: str = "eval"
) -> list[Trial]:
    """``per_subject`` trials for each of the first ``subjects`` novel subjects (all by default),
    subject-major, deterministic in ``seed`` and ``split``; the decoys are drawn among all novel subjects.

    ``split`` names a disjoint family of seeds: settings (the default λ, guidance mode, joint targets)
    are chosen on ``validation`` trials and reported on ``eval`` trials, never tuned on the latter."""
    if split not in SPLITS:
        raise ValueError(f"toyworld.eval.split: must be one of {', '.join(SPLITS)}, got {split!r}")
    scenes, pool = list(SCENES), novel_subjects()
    if subjects is not None and not 1 <= subjects <= len(pool):
        raise ValueError(f"toyworld.eval.subjects: must lie in [1, {len(pool)}], got {subjects}")
    if max_refs + 1 > len(scenes):
        raise ValueError(f"toyworld.eval.references: at most {len(scenes) - 1} references (one scene per image)")
    trials = []
    for subject in pool[:subjects]:
        for i in range(per_subject):
            rng = item_rng(seed, f"{split}/{subject.slug}", i)
            order = [scenes[j] for j in rng.permutation(len(scenes))]
            layouts = [random_layout(rng, size) for _ in range(max_refs + 1)]
            others = [x for x in pool if x != subject]
            trials.append(
                Trial(
                    subject=subject,
                    index=i,
                    seed=int(rng.integers(2**31)),
                    ref_scenes=tuple(order[:max_refs]),
                    ref_layouts=tuple(layouts[:max_refs]),
                    target_scene=order[max_refs],
                    target_layout=layouts[max_refs],
                    decoy=others[int(rng.integers(len(others)))],
                    other_scenes=tuple(order[max_refs + 1 :]),
                )
            )
    return trials


def as_arrays(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(im.convert("RGB")) for im in images]
