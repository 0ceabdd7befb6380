"""The papers' published numbers for each protocol: anchors shown beside a run's measurements.

They were measured by the papers' authors, with their checkpoints, backbones and subject lists, not
by this system; a run is comparable with them only with the same base model and scorers (the sd14
profile) and the full protocol. ``method`` names the method of this system that reproduces a row
(None: a method this system does not have).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    label: str
    method: str | None
    values: dict[str, float]


@dataclass(frozen=True)
class Published:
    protocol: str
    source: str
    base_model: str
    rows: tuple[Anchor, ...]


PUBLISHED = (
    Published(
        "dreambooth",
        "paper 002 (JeDi, CVPR 2024), Table 2: DreamBench, 30 subjects × 25 prompts, CLIP ViT-B/32, DINO ViT-S/16; "
        "fine-tuning methods with 3 photos, finetuning-free ones with 1 unless stated",
        "Stable Diffusion 1.4",
        (
            Anchor(
                "DreamBooth",
                "dreambooth",
                dict(clip_t=0.2812, clip_i=0.8135, mclip_i=0.8683, dino=0.6341, mdino=0.7115),
            ),
            Anchor(
                "Custom Diffusion", None, dict(clip_t=0.3015, clip_i=0.7952, mclip_i=0.8640, dino=0.6343, mdino=0.7109)
            ),
            Anchor(
                "BLIP Diffusion", None, dict(clip_t=0.2934, clip_i=0.7899, mclip_i=0.8620, dino=0.5855, mdino=0.6692)
            ),
            Anchor("ELITE", None, dict(clip_t=0.2961, clip_i=0.7924, mclip_i=0.8615, dino=0.5922, mdino=0.6805)),
            Anchor(
                "JeDi, 1 photo", None, dict(clip_t=0.3040, clip_i=0.7818, mclip_i=0.8764, dino=0.6190, mdino=0.7510)
            ),
            Anchor(
                "JeDi, 3 photos", "jedi", dict(clip_t=0.2932, clip_i=0.8139, mclip_i=0.9011, dino=0.6791, mdino=0.8037)
            ),
        ),
    ),
    Published(
        "dreambooth",
        "paper 001, Table 1, 'diverse prompt': DreamBench's 25 prompts × 4 images; 'CLIP score' = CLIP-I; "
        "best checkpoint of 200-800 steps per subject",
        "Stable Diffusion 2.1-base",
        (
            Anchor("two-stage (the paper's method)", "two-stage", dict(clip_i=0.800, dino=0.629)),
            Anchor("DreamBooth", "dreambooth", dict(clip_i=0.753, dino=0.540)),
        ),
    ),
    Published(
        "simple",
        "paper 001, Table 1, 'simple prompt': 64 images of 'a photo of <rare> <class>'; 'CLIP score' = CLIP-I",
        "Stable Diffusion 2.1-base",
        (
            Anchor("two-stage (the paper's method)", "two-stage", dict(clip_i=0.859, dino=0.718)),
            Anchor("DreamBooth", "dreambooth", dict(clip_i=0.841, dino=0.690)),
        ),
    ),
    Published(
        "core",
        "paper 003 (CoRe), Table 1: 24 concepts × 20 prompts × 32 images; CLIP-I and DINO on foreground-masked "
        "images without the stylization and outfit prompts",
        "not stated in the paper (the authors' public code: Stable Diffusion 2.1-base)",
        (
            Anchor("Custom Diffusion", None, dict(clip_t=0.2537, mclip_i=0.6706, mdino=0.5163)),
            Anchor("NeTI", None, dict(clip_t=0.2386, mclip_i=0.7104, mdino=0.5623)),
            Anchor("OFT", None, dict(clip_t=0.2397, mclip_i=0.7018, mdino=0.5612)),
            Anchor("AttnDreamBooth", None, dict(clip_t=0.2547, mclip_i=0.6918, mdino=0.5641)),
            Anchor("CoRe", "core", dict(clip_t=0.2568, mclip_i=0.7054, mdino=0.5842)),
        ),
    ),
    Published(
        "selfdistill",
        "paper 000, Table 1: DreamBench, 25 prompts × 50 images per subject; CLIP-MI = masked CLIP-I",
        "Stable Diffusion 1.5",
        (
            Anchor("real photos", None, dict(mclip_i=0.947)),
            Anchor("DreamBooth", "dreambooth", dict(mclip_i=0.851, negclip_t=0.306, conflict_rate=0.240)),
            Anchor("Custom Diffusion", None, dict(mclip_i=0.824, negclip_t=0.309, conflict_rate=0.224)),
            Anchor("BLIP-Diffusion", None, dict(mclip_i=0.852, negclip_t=0.287, conflict_rate=0.386)),
            Anchor("DisenBooth", None, dict(mclip_i=0.834, negclip_t=0.305, conflict_rate=0.233)),
            Anchor("SID", None, dict(mclip_i=0.777, negclip_t=0.314, conflict_rate=0.243)),
            Anchor("self-distillation", "selfdistill", dict(mclip_i=0.872, negclip_t=0.310, conflict_rate=0.194)),
        ),
    ),
)


def published_for(protocol: str) -> list[Published]:
    return [p for p in PUBLISHED if p.protocol == protocol]
