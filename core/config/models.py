"""Which model each role uses: ``tiny``, a local directory, or a hub id (see ``core.zoo``)."""

from __future__ import annotations

from pydantic import Field

from core.config.base import Section


class ModelsConfig(Section):
    sd: str = Field("tiny", description="text-to-image base (JeDi starts from it)")
    jedi: str = Field("tiny", description="JeDi pipeline for finetuning-free personalization")
    sdxl: str = Field("tiny", description="SDXL, draws S3 collages")
    inpaint: str = Field("tiny", description="inpainting model, fills S3 backgrounds")
    pix2pix: str = Field("tiny", description="InstructPix2Pix, stylizes S3 sets")
    clip: str = Field("tiny", description="CLIP scorer (open_clip)")
    negclip: str = Field("tiny", description="NegCLIP scorer for NegCLIP-T: the released negclip.pth or a directory")
    dino: str = Field("tiny", description="DINO scorer (transformers)")
    detector: str = Field("tiny", description="Grounding DINO open-set detector")
    segmenter: str = Field("tiny", description="SAM segmenter")
    llm: str = Field("tiny", description="LLM writing subjects and prompts")
