"""The method registry: one dict of fine-tuning method name → ``Method``, read by everything that names a method.

Config validation (``finetune.method``, ``toyworld.eval.finetune_methods``), the subject card's
``method``, the fine-tuning recipe (the plan it trains), drawing with a subject (the method's
inference step), evaluation and ToyWorld (labels) all look methods up here, so a method is added in
one place: a module that calls ``register``. Methods of the code base register when ``core.methods``
is imported; methods from elsewhere are modules named in ``finetune.plugins``, imported whenever a
config is validated, so Ray workers and Serve replicas (which validate the config they are sent)
know them as well as the driver does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.config.finetune import FinetuneSection
    from core.methods.plan import MethodPlan
    from core.subjects import SubjectCard


class InferenceStep(Protocol):
    """What a method does to a loaded subject before drawing a prompt (CoRe's test-time optimization)."""

    def default_steps(self, settings: FinetuneSection) -> int:
        """Steps when the caller does not say (0 = off)."""
        ...

    def applied(
        self,
        pipe: Any,
        card: SubjectCard,
        subject_dir: Path,
        prompt: str,
        settings: FinetuneSection,
        steps: int,
        seed: int,
    ) -> AbstractContextManager[None]:
        """``pipe`` adapted to ``prompt`` (a template naming the subject once) while the context is open;
        the subject's trained weights come back when it closes. ``subject_dir`` holds the subject's
        files (its card, weights, and the latents of its photos when the method publishes them)."""
        ...


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    """How reports name it (``Textual Inversion``)."""
    plan: Callable[[FinetuneSection], MethodPlan] | None = None
    """What it trains, from the ``finetune`` section; None for a method with its own recipe (multi-concept EM)."""
    inference_step: InferenceStep | None = None
    selectable: bool = True
    """Offered by ``s3jedi finetune --method`` (and ``finetune.method``); other methods have their own command."""
    instance_latents: bool = False
    """Its subjects carry the VAE latents of their training photos (``core.subjects``), which its
    inference step reads (CoRe's test-time optimization noises them)."""


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method``; registering the same object twice is harmless, another method under a taken name is not."""
    known = METHODS.get(method.name)
    if known is not None and known is not method:
        raise ValueError(f"method {method.name!r} is registered already ({known.label})")
    METHODS[method.name] = method
    return method


def names(selectable: bool = True) -> list[str]:
    """Registered method names (only those ``--method`` offers, by default)."""
    return [name for name, m in METHODS.items() if m.selectable or not selectable]


def get(name: str, field: str = "method") -> Method:
    if name not in METHODS:
        raise ValueError(f"{field}: {name!r} is not one of {', '.join(names(selectable=False))}")
    return METHODS[name]


def method_plan(settings: FinetuneSection, name: str) -> MethodPlan:
    """The plan ``name`` trains with these settings."""
    method = get(name, "--method")
    if method.plan is None:
        raise ValueError(f"--method: {name!r} is trained by its own command, not by s3jedi finetune")
    return method.plan(settings)


def parse_methods(text: str) -> list[str]:
    """``dreambooth`` or ``ti,core``: every name offered by ``--method``, none twice."""
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    if not chosen or any(m not in names() for m in chosen):
        raise ValueError(f"--method: {text!r}: choose from {', '.join(names())} (comma-separated for several)")
    return list(dict.fromkeys(chosen))


def import_plugins(modules: list[str]) -> None:
    """Import modules that register methods (``finetune.plugins``); each import happens once per process."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"plugins: cannot import {module!r} ({exc})") from None
