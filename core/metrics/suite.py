"""The DreamBooth metric suite: every per-image score of a generated image of one subject.

- **CLIP-T**: cosine of the image and its prompt *without* the special token ("a dog in the snow").
- **CLIP-I** / **DINO**: cosine of the image with each real photo of the subject, averaged.
- **MCLIP-I** / **MDINO**: the same on foreground-only images (subject cut out, background filled)
  on both sides, so only the subject is compared.
- **NegCLIP-T** (``negclip_t``, with a ``negclip`` scorer): cosine of the image and its prompt under
  NegCLIP (paper 000 §3.2), CLIP-T's computation on a CLIP fine-tuned to read composition.
- **hard-negative accuracy** (``hard_negative_acc``) and **conflict** (``core.metrics.text_alignment``),
  from the primary CLIP: this project's own text metrics, not NegCLIP-T.
- Optionally a second CLIP (ViT-L/14 beside the ViT-B/32 of published tables): ``*_secondary``.

A subject's reference features are computed once (``references``) and reused for every batch of
generated images (``score``). Scores are fp32 cosines from the zoo's scorers (unit-norm, CPU), so a
batch scores exactly like its images one by one. ``describe`` records the backbones and their
preprocessing so every result says what it was measured with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from core.metrics.foregrounds import MaskSettings, detect_masks, foregrounds
from core.metrics.similarity import mean_similarity, paired_cosine
from core.metrics.text_alignment import conflicts, hard_negative_accuracy
from core.zoo.families.clip import ClipScorer

IDENTITY_METRICS = {
    "clip": ("clip_i", "mclip_i"),
    "dino": ("dino", "mdino"),
    "clip_secondary": ("clip_i_secondary", "mclip_i_secondary"),
}
"""Image encoder -> (plain, masked) metric name."""
TEXT_METRICS = {"clip": "clip_t", "clip_secondary": "clip_t_secondary"}


@dataclass
class ReferenceFeatures:
    """One subject's real photos, embedded by every encoder of the suite (plain and foreground-only)."""

    class_name: str
    plain: dict[str, torch.Tensor]
    masked: dict[str, torch.Tensor]
    """Only photos where a mask was found; empty tensors when the suite has no masks."""
    masks_found: int


class MetricSuite:
    def __init__(
        self,
        clip,
        dino,
        *,
        clip_secondary=None,
        negclip=None,
        detector=None,
        segmenter=None,
        mask_settings: MaskSettings | None = None,
        batch_size: int = 32,
    ):
        """``clip``/``clip_secondary``/``negclip``: zoo ``ClipScorer``; ``dino``: zoo ``DinoScorer``. Masks are detected
        when ``detector``, ``segmenter`` and ``mask_settings`` are all given; masks passed to
        ``references``/``score`` explicitly are used either way."""
        self.encoders = {"clip": clip, "dino": dino}
        if clip_secondary is not None:
            self.encoders["clip_secondary"] = clip_secondary
        self.negclip = negclip
        self.detector, self.segmenter = detector, segmenter
        self.mask_settings = mask_settings
        self.batch_size = batch_size

    @property
    def detects_masks(self) -> bool:
        return self.detector is not None and self.segmenter is not None and self.mask_settings is not None

    @property
    def metric_names(self) -> list[str]:
        """The columns ``score`` returns, in a stable order, when masks come from the detector."""
        names = [TEXT_METRICS[k] for k in self.encoders if k in TEXT_METRICS]
        for key in self.encoders:
            plain, masked = IDENTITY_METRICS[key]
            names += [plain, masked] if self.detects_masks else [plain]
        if self.negclip is not None:
            names.append("negclip_t")
        names += ["hard_negative_acc", "conflict"]
        if self.detects_masks:
            names += ["mask_found", "mask_fraction"]
        return names

    # -- building blocks ----------------------------------------------------------------------
    def _masks(
        self, images: Sequence[Image.Image], class_name: str, given: Sequence[np.ndarray | None] | None
    ) -> list[np.ndarray | None] | None:
        if given is not None:
            if len(given) != len(images):
                raise ValueError(f"masks: {len(given)} masks for {len(images)} images")
            return list(given)
        if not self.detects_masks:
            return None
        return detect_masks(self.detector, self.segmenter, images, class_name, self.mask_settings)

    def _fill(self) -> dict:
        return {"fill": self.mask_settings.fill} if self.mask_settings else {}

    def _embed(self, key: str, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.encoders[key].encode_images(list(images), batch_size=self.batch_size)

    def _embed_masked(self, key: str, cut: list[Image.Image | None]) -> tuple[torch.Tensor, list[int]]:
        """Embeddings of the foreground images that exist, and their positions."""
        present = [i for i, c in enumerate(cut) if c is not None]
        return self._embed(key, [cut[i] for i in present]), present

    # -- API ----------------------------------------------------------------------------------
    def references(
        self, photos: Sequence[Image.Image], class_name: str, masks: Sequence[np.ndarray | None] | None = None
    ) -> ReferenceFeatures:
        """Embed a subject's real photos once; ``masks`` overrides detection (True = subject)."""
        photos = [p.convert("RGB") for p in photos]
        if not photos:
            raise ValueError(f"references: no photos given for {class_name!r}")
        found = self._masks(photos, class_name, masks)
        plain = {key: self._embed(key, photos) for key in self.encoders}
        masked: dict[str, torch.Tensor] = {}
        if found is not None:
            cut = foregrounds(photos, found, **self._fill())
            masked = {key: self._embed_masked(key, cut)[0] for key in self.encoders}
        return ReferenceFeatures(class_name, plain, masked, sum(m is not None for m in found or []))

    def score(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        references: ReferenceFeatures,
        negatives: Sequence[Sequence[str]] | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-image scores of ``images`` (one prompt each, token-free) against one subject's references.

        ``negatives[i]``: hard-negative prompts of image i (default: none, ``hard_negative_acc`` NaN). ``masks``
        overrides detection. Masked scores are NaN for an image without a mask.
        """
        images = [im.convert("RGB") for im in images]
        if len(prompts) != len(images):
            raise ValueError(f"prompts: {len(prompts)} prompts for {len(images)} images")
        negatives = [list(n) for n in negatives] if negatives is not None else [[] for _ in images]
        if len(negatives) != len(images):
            raise ValueError(f"negatives: {len(negatives)} lists for {len(images)} images")
        n = len(images)
        subject_text = f"a {references.class_name}"
        texts = list(dict.fromkeys([*prompts, subject_text, *(t for neg in negatives for t in neg)]))
        found = self._masks(images, references.class_name, masks)
        cut = foregrounds(images, found, **self._fill()) if found is not None else None

        out: dict[str, np.ndarray] = {}
        for key in self.encoders:
            emb = self._embed(key, images)
            plain, masked = IDENTITY_METRICS[key]
            out[plain] = mean_similarity(emb, references.plain[key]).numpy().astype(np.float64)
            if cut is not None:
                scores = np.full(n, np.nan)
                if key in references.masked:
                    masked_emb, present = self._embed_masked(key, cut)
                    if present:
                        scores[present] = mean_similarity(masked_emb, references.masked[key]).numpy()
                out[masked] = scores
            if key in TEXT_METRICS:
                table = dict(zip(texts, self.encoders[key].encode_texts(texts), strict=True))
                prompt_emb = torch.stack([table[p] for p in prompts])
                out[TEXT_METRICS[key]] = paired_cosine(emb, prompt_emb).numpy().astype(np.float64)
                if key == "clip":
                    neg = [
                        torch.stack([table[t] for t in ns]) if ns else torch.empty(0, emb.shape[1]) for ns in negatives
                    ]
                    out["hard_negative_acc"] = hard_negative_accuracy(emb, prompt_emb, neg).numpy().astype(np.float64)
                    subject_emb = table[subject_text].expand_as(emb)
                    out["conflict"] = conflicts(emb, prompt_emb, subject_emb).numpy()
        if self.negclip is not None:
            image_emb = self.negclip.encode_images(images, batch_size=self.batch_size)
            prompt_emb = self.negclip.encode_texts(list(prompts))
            out["negclip_t"] = paired_cosine(image_emb, prompt_emb).numpy().astype(np.float64)
        if found is not None:
            out["mask_found"] = np.array([m is not None for m in found])
            out["mask_fraction"] = np.array([np.nan if m is None else float(np.mean(m)) for m in found])
        return out

    def describe(self) -> dict:
        """The exact backbones and preprocessing behind the scores, JSON-able."""
        info: dict = {key: describe_encoder(enc) for key, enc in self.encoders.items()}
        if self.negclip is not None:
            info["negclip"] = describe_encoder(self.negclip)
        if self.detects_masks:
            info["masks"] = {
                "detector": self.detector.name,
                "detector_input": self.detector.input_cfg,
                "segmenter": self.segmenter.name,
                **asdict(self.mask_settings),
                "caption": "the subject's class name",
            }
        info["text"] = "prompt without the special token; conflict compares with 'a <class>'"
        return info


def describe_encoder(encoder) -> dict:
    """Name, library and preprocessing of a zoo ``ClipScorer`` or ``DinoScorer``."""
    if isinstance(encoder, ClipScorer):
        return {
            "model": encoder.name,
            "library": "open_clip",
            "embed_dim": encoder.embed_dim,
            "preprocess": " ".join(str(encoder.preprocess).split()),
            "precision": str(encoder.input_dtype).removeprefix("torch."),
        }
    config = encoder.model.config
    return {
        "model": encoder.name,
        "library": "transformers",
        "architecture": type(encoder.model).__name__,
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "feature": "final-layer-normed CLS token",
        "preprocess": encoder.processor.to_dict(),
    }
