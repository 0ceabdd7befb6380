"""The ToyWorld vocabulary: shapes, body colours and scenes, captions, and the novel-subject split.

A *subject* is a (shape, colour) pair; a *scene* is a flat background colour. The palettes are
chosen so that every body colour is at least ~75 RGB units from every scene colour and from every
other body colour: the oracle separates them by nearest palette entry even on blurry samples.

The novel subjects (held out of every training set) form a Latin-square pattern, one per colour
and covering every shape, so each shape and each colour is still seen in training; only the
*combination* is new. That is what makes identity transfer measurable: the text prompt cannot
name a novel subject's combination from training captions, the references must carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (250, 220, 30),
    "green": (40, 200, 60),
    "cyan": (40, 220, 220),
    "blue": (40, 70, 230),
    "purple": (150, 50, 200),
    "pink": (250, 130, 200),
}
SCENES: dict[str, tuple[int, int, int]] = {
    "snow": (236, 240, 244),
    "sand": (222, 198, 140),
    "grass": (96, 150, 70),
    "sea": (50, 100, 160),
    "night": (28, 28, 52),
    "dusk": (118, 96, 128),
}
GENERIC_WORD = "thing"
"""The word that stands for any subject in generic captions and evaluation prompts."""


@dataclass(frozen=True, order=True)
class Subject:
    shape: str
    colour: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape: {self.shape!r} is not one of {SHAPES}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour: {self.colour!r} is not one of {tuple(COLOURS)}")

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def slug(self) -> str:
        return f"{self.colour}-{self.shape}"


def all_subjects() -> list[Subject]:
    return [Subject(shape, colour) for colour in COLOURS for shape in SHAPES]


def novel_subjects() -> list[Subject]:
    """One held-out shape per colour, cycling through the shapes (a Latin-square pattern)."""
    return [Subject(SHAPES[(i + 1) % len(SHAPES)], colour) for i, colour in enumerate(COLOURS)]


def training_subjects() -> list[Subject]:
    held = set(novel_subjects())
    return [s for s in all_subjects() if s not in held]


def caption(subject: Subject, scene: str, generic: bool = False) -> str:
    """``a red circle on the snow``, or with ``generic`` only the scene: ``a thing on the snow``."""
    if scene not in SCENES:
        raise ValueError(f"scene: {scene!r} is not one of {tuple(SCENES)}")
    what = GENERIC_WORD if generic else subject.name
    return f"a {what} on the {scene}"


def vocabulary() -> list[str]:
    """Every word a ToyWorld caption can contain (the toy tokenizer gives each its own token)."""
    return ["a", "on", "the", GENERIC_WORD, *SHAPES, *COLOURS, *SCENES]
