"""``ImageSet``: one S3 set in memory (PIL images, boolean masks), and its row in the sets table."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.s3.codec import CorruptImageError, decode_image, decode_mask, encode_image, encode_mask
from core.s3.schema import image_path


def image_record(image_png: bytes, mask_png: bytes, prompt: str, seed: int, set_id: str, index: int) -> dict[str, Any]:
    """Image ``index`` of set ``set_id`` as an entry of the set's ``images`` list, from already encoded PNGs
    (the size is read from the header)."""
    with Image.open(io.BytesIO(image_png)) as header:
        width, height = header.size
    return {
        "image": {"bytes": image_png, "path": image_path(set_id, index)},
        "mask": {"bytes": mask_png, "path": image_path(set_id, index, mask=True)},
        "prompt": prompt,
        "seed": int(seed),
        "width": width,
        "height": height,
    }


@dataclass
class ImageSet:
    """Several images of one subject, each with its subject mask and caption.

    ``images[i]``, ``masks[i]`` (bool, same size as the image, True on the subject), ``prompts[i]`` and
    ``seeds[i]`` describe image ``i``. ``provenance`` is the map its shard carries (config hash, data
    fingerprint, ``models``, ``stage_versions``); empty for sets not made by the builder.
    """

    set_id: str
    category: str
    subject: str
    images: list[Image.Image]
    masks: list[np.ndarray]
    prompts: list[str]
    seeds: list[int] = field(default_factory=list)
    seed: int = 0
    collage_prompt: str = ""
    consistency: float = float("nan")
    style: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seeds:
            self.seeds = [0] * len(self.images)
        lengths = {len(self.images), len(self.masks), len(self.prompts), len(self.seeds)}
        if len(lengths) != 1:
            raise ValueError(
                f"set {self.set_id}: {len(self.images)} images, {len(self.masks)} masks, "
                f"{len(self.prompts)} prompts, {len(self.seeds)} seeds (must be equal)"
            )
        for i, (image, mask) in enumerate(zip(self.images, self.masks, strict=True)):
            if mask.shape != (image.height, image.width):
                raise ValueError(
                    f"set {self.set_id}: mask {i} is {mask.shape}, image {i} is {(image.height, image.width)}"
                )

    def __len__(self) -> int:
        return len(self.images)

    def to_row(self) -> dict[str, Any]:
        """The set as a row of ``SETS_SCHEMA`` (PNG-encoded); its provenance belongs to the file (``write_sets``)."""
        return {
            "set_id": self.set_id,
            "category": self.category,
            "subject": self.subject,
            "seed": int(self.seed),
            "collage_prompt": self.collage_prompt,
            "consistency": float(self.consistency),
            "style": self.style,
            "images": [
                image_record(encode_image(image), encode_mask(mask), prompt, seed, self.set_id, i)
                for i, (image, mask, prompt, seed) in enumerate(
                    zip(self.images, self.masks, self.prompts, self.seeds, strict=True)
                )
            ],
        }

    @classmethod
    def from_row(cls, row: dict[str, Any], provenance: dict[str, Any] | None = None) -> ImageSet:
        """Decode a row of the sets table (as ``read_sets`` or pyarrow's ``to_pylist`` give it); a corrupt
        image or mask raises ``CorruptImageError`` naming the set and the image."""
        images = list(row["images"])
        decoded, masks = [], []
        for i, im in enumerate(images):
            try:
                decoded.append(decode_image(im["image"]["bytes"]))
                masks.append(decode_mask(im["mask"]["bytes"]))
            except CorruptImageError as exc:
                raise CorruptImageError(f"set {row['set_id']}: image {i}: {exc}") from None
        return cls(
            set_id=row["set_id"],
            category=row["category"],
            subject=row["subject"],
            images=decoded,
            masks=masks,
            prompts=[im["prompt"] for im in images],
            seeds=[int(im["seed"]) for im in images],
            seed=int(row["seed"]),
            collage_prompt=row["collage_prompt"],
            consistency=float(row["consistency"]),
            style=row["style"],
            provenance=dict(provenance or {}),
        )
