"""Text alignment beyond CLIP-T: hard negatives and the subject-versus-prompt conflict.

CLIP-T alone rewards any image that matches the prompt's *words*, including the subject's class
word, so an image that only shows the subject still scores well. Two sharper views, both computed
from the same CLIP embeddings as CLIP-T:

- **hard-negative accuracy** (``hard_negative_acc``): the other prompts of the benchmark for the
  same subject differ only in the context ("in the snow" vs "on the beach"), so they are hard
  negatives. Per image: the fraction of negatives that its own prompt beats. It takes few values (a
  multiple of 1/negatives), so it ranks images coarsely. It is *not* NegCLIP-T, which is a cosine
  under the NegCLIP model (``core.zoo.families.negclip``, the suite's ``negclip_t``).
- **conflict**: the image is at least as close to the bare subject text (``"a dog"``) as to its
  full prompt, i.e. the subject was kept but the prompt's context was lost (the failure mode of
  overfitted personalization). The conflict rate is the mean over images.
"""

from __future__ import annotations

import torch

from core.metrics.similarity import cosine_matrix, paired_cosine


def hard_negative_accuracy(
    image_emb: torch.Tensor, prompt_emb: torch.Tensor, negatives: list[torch.Tensor]
) -> torch.Tensor:
    """(N,) fraction of each image's negatives (``negatives[i]``: (M_i, D)) that its prompt beats;
    NaN for an image without negatives."""
    if len(negatives) != image_emb.shape[0]:
        raise ValueError(f"negatives: {len(negatives)} lists for {image_emb.shape[0]} images")
    positive = paired_cosine(image_emb, prompt_emb)
    out = torch.full((image_emb.shape[0],), float("nan"))
    for i, neg in enumerate(negatives):
        if neg.shape[0]:
            out[i] = (positive[i] > cosine_matrix(image_emb[i : i + 1], neg)[0]).float().mean()
    return out


def conflicts(image_emb: torch.Tensor, prompt_emb: torch.Tensor, subject_emb: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the image is at least as close to the bare subject text as to its full prompt."""
    return paired_cosine(image_emb, subject_emb) >= paired_cosine(image_emb, prompt_emb)
