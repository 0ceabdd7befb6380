"""``s3jedi finetune sample``: a quick look at a fine-tuned subject, drawn through the subject contract
(``core.subject_pipeline``), so CoRe subjects get their test-time optimization per prompt."""

from __future__ import annotations

import torch

from core.config import S3JediConfig
from core.subject_pipeline import SubjectPipeline, locate


def sample_subject(
    cfg: S3JediConfig,
    subject: str,
    prompts: list[str],
    *,
    steps: int,
    guidance_scale: float,
    side: int,
    seed: int,
    tto_steps: int | None = None,
) -> list:
    """One image per prompt, prompt ``i`` drawn with seed ``seed + i``; ``subject`` is an id in the
    configured store or a subject directory."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = SubjectPipeline.load(locate(cfg, subject), home=cfg.home, device=device)
    drawing = loaded.draw(
        prompts,
        [seed + i for i in range(len(prompts))],
        settings=cfg.finetune,
        steps=steps,
        guidance_scale=guidance_scale,
        height=side,
        tto_steps=tto_steps,
    )
    return drawing.images
