"""The category list: read, cleaned (bad lines become rejects), sampled with the seed, expanded to ids.

Subject ids are ``<category slug>-<k>`` (``teddy-bear-002``): stable across runs and readable in
rejects and logs. Two categories that slug the same (``t-shirt``, ``t shirt``) are duplicates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core import storage
from core.config.datagen import SubjectsSection
from datagen.seeds import derive_seed, rng

MAX_CATEGORY_CHARS = 48
_CATEGORY = re.compile(r"^[a-z][a-z0-9 '-]*$")


class NoCategoriesError(ValueError):
    """Nothing usable to build from: the run stops before any model is loaded."""


@dataclass(frozen=True)
class CategoryReject:
    category: str
    reason: str
    details: str


def slug(category: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")


def read_categories(cfg: SubjectsSection) -> tuple[list[str], str]:
    """The raw category lines and where they came from (for messages)."""
    if cfg.categories is not None:
        return list(cfg.categories), "datagen.subjects.categories"
    path = storage.local_path(cfg.categories_file)
    if not path.is_file():
        raise FileNotFoundError(f"datagen.subjects.categories_file: no such file {path}")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line], str(path)


def clean_categories(raw: list[str]) -> tuple[list[str], list[CategoryReject]]:
    """Lower-cased, whitespace-collapsed categories in input order; bad or repeated ones rejected."""
    kept: list[str] = []
    rejects: list[CategoryReject] = []
    seen: dict[str, str] = {}
    for entry in raw:
        category = " ".join(str(entry).lower().split())
        if not category:
            rejects.append(CategoryReject(str(entry), "empty", "blank category"))
        elif len(category) > MAX_CATEGORY_CHARS:
            rejects.append(CategoryReject(category, "too-long", f"{len(category)} > {MAX_CATEGORY_CHARS} characters"))
        elif not _CATEGORY.match(category):
            rejects.append(
                CategoryReject(
                    category, "bad-characters", "letters, digits, spaces, ' and - only, starting with a letter"
                )
            )
        elif slug(category) in seen:
            rejects.append(CategoryReject(category, "duplicate", f"same as {seen[slug(category)]!r}"))
        else:
            seen[slug(category)] = category
            kept.append(category)
    return kept, rejects


def choose(categories: list[str], n: int | None, seed: int) -> list[str]:
    """``n`` categories drawn with the seed, kept in list order (all of them when ``n`` is None)."""
    if n is None or n >= len(categories):
        return list(categories)
    picked = sorted(rng(derive_seed(seed, "categories")).choice(len(categories), size=n, replace=False))
    return [categories[i] for i in picked]


def subject_ids(category: str, count: int) -> list[str]:
    width = max(3, len(str(count - 1)))
    return [f"{slug(category)}-{k:0{width}d}" for k in range(count)]
