"""Stable Diffusion families (diffusers): text-to-image base, SDXL, inpainting, InstructPix2Pix.

The tiny models keep the production *geometry* — a VAE that downsamples 8× into 4 latent
channels, a cross-attention UNet, the real CLIP tokenizer with 77 positions — and shrink only the
widths and depths. A 64×64 image is therefore an 8×8×4 latent exactly as a 512×512 image is a
64×64×4 latent in SD1.4, so shape bugs show up on the tiny profile.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.zoo.clip_bpe import EOS, write_clip_tokenizer
from core.zoo.family import Family
from core.zoo.safety import refuse_pickle_only_dir

SEED = 0
TINY_SIZE = 64
TEXT_WIDTH = 32


def _scheduler():
    from diffusers import DDIMScheduler

    # The SD1.x/SDXL noise schedule; DDIM because it is deterministic and fast for tests.
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        num_train_timesteps=1000,
    )


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TINY_SIZE,
    )


def _text_encoder(tok_dir: Path, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tok_dir))
    config = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=TEXT_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_WIDTH,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config), tok


def _unet(in_channels: int = 4, **overrides):
    from diffusers import UNet2DConditionModel

    kwargs = dict(
        sample_size=TINY_SIZE // 8,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=32,
        cross_attention_dim=TEXT_WIDTH,
    )
    kwargs.update(overrides)
    return UNet2DConditionModel(**kwargs)


def _save(pipe, out_dir: Path) -> None:
    pipe.save_pretrained(str(out_dir), safe_serialization=True)


def _sd_components(out_dir: Path, unet_in_channels: int) -> dict:
    torch.manual_seed(SEED)
    tok_dir = out_dir / ".tokenizer"
    write_clip_tokenizer(tok_dir)
    text_encoder, tokenizer = _text_encoder(tok_dir)
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()
    return dict(
        unet=_unet(unet_in_channels),
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_pipeline(pipeline_cls_name: str, unet_in_channels: int):
    def build(out_dir: Path) -> None:
        import diffusers

        pipe_cls = getattr(diffusers, pipeline_cls_name)
        _save(pipe_cls(**_sd_components(out_dir, unet_in_channels)), out_dir)

    return build


build_tiny_sd = _build_pipeline("StableDiffusionPipeline", 4)


def build_tiny_sdxl(out_dir: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    torch.manual_seed(SEED)
    tok_dirs = (out_dir / ".tok1", out_dir / ".tok2")
    write_clip_tokenizer(tok_dirs[0], pad_token=EOS)
    write_clip_tokenizer(tok_dirs[1], pad_token="!")
    text_encoder, tokenizer = _text_encoder(tok_dirs[0])
    text_encoder_2, tokenizer_2 = _text_encoder(tok_dirs[1], with_projection=True)
    for d in tok_dirs:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    time_dim = 8
    unet = _unet(
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * TEXT_WIDTH,  # penultimate states of both encoders, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # 6 micro-conditioning numbers (original size, crop, target size) + pooled text_encoder_2 output
        projection_class_embeddings_input_dim=6 * time_dim + TEXT_WIDTH,
        transformer_layers_per_block=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=_scheduler(),
    )
    _save(pipe, out_dir)


def _loader(family: str, pipeline_cls_name: str, sd_extras: bool = True):
    def load(source: str, *, device: str = "cpu", dtype=None):
        import diffusers

        refuse_pickle_only_dir(source, family)
        pipe_cls = getattr(diffusers, pipeline_cls_name)
        kwargs = dict(use_safetensors=True)
        if dtype is not None:
            kwargs["dtype"] = dtype
        if sd_extras:
            # The NSFW checker is a separate model with its own policy question; s3jedi does not run it.
            kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        return pipe_cls.from_pretrained(source, **kwargs).to(device)

    return load


def _shape(pipeline_cls_name: str, unet_cfg_name: str, text_cfg_name: str, scheduler: str):
    def build_shape(device: str = "cpu", dtype=None, variant: str | None = None):
        from core.zoo import shapes

        return shapes.sd_pipeline(
            pipeline_cls_name, getattr(shapes, unet_cfg_name), getattr(shapes, text_cfg_name), scheduler, device, dtype
        )

    return build_shape


def _sdxl_shape(device: str = "cpu", dtype=None, variant: str | None = None):
    from core.zoo import shapes

    return shapes.sdxl_pipeline(device, dtype)


FAMILIES = [
    Family(
        name="sd",
        summary="text-to-image base: UNet + VAE + CLIP text encoder + tokenizer + scheduler (StableDiffusionPipeline)",
        library="diffusers",
        production="CompVis/stable-diffusion-v1-4",
        build_tiny=build_tiny_sd,
        # The auto class picks SD1.x/2.x or SDXL from the checkpoint's model_index.json.
        load=_loader("sd", "AutoPipelineForText2Image"),
        build_shape=_shape("StableDiffusionPipeline", "SD1_UNET", "CLIP_L_TEXT", "PNDMScheduler"),
    ),
    Family(
        name="sdxl",
        summary="SDXL with two text encoders (StableDiffusionXLPipeline), draws the S3 collages",
        library="diffusers",
        production="stabilityai/stable-diffusion-xl-base-1.0",
        build_tiny=build_tiny_sdxl,
        load=_loader("sdxl", "StableDiffusionXLPipeline", sd_extras=False),
        build_shape=_sdxl_shape,
    ),
    Family(
        name="inpaint",
        summary="inpainting, 9-channel UNet (StableDiffusionInpaintPipeline), fills S3 backgrounds",
        library="diffusers",
        production="stabilityai/stable-diffusion-2-inpainting",
        build_tiny=_build_pipeline("StableDiffusionInpaintPipeline", 9),
        load=_loader("inpaint", "StableDiffusionInpaintPipeline"),
        build_shape=_shape("StableDiffusionInpaintPipeline", "SD2_INPAINT_UNET", "CLIP_H_TEXT", "DDIMScheduler"),
    ),
    Family(
        name="pix2pix",
        summary="InstructPix2Pix, 8-channel UNet (StableDiffusionInstructPix2PixPipeline), stylizes S3 sets",
        library="diffusers",
        production="timbrooks/instruct-pix2pix",
        build_tiny=_build_pipeline("StableDiffusionInstructPix2PixPipeline", 8),
        load=_loader("pix2pix", "StableDiffusionInstructPix2PixPipeline"),
        build_shape=_shape(
            "StableDiffusionInstructPix2PixPipeline", "PIX2PIX_UNET", "CLIP_L_TEXT", "EulerAncestralDiscreteScheduler"
        ),
    ),
]
