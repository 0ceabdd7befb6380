"""Production architectures at random init: the ``shape`` entries of the zoo.

No machine here can download a checkpoint, but speed and memory do not depend on the weights: a
model with the production architecture and random weights runs exactly as fast as the real one.
``core.zoo.load(family, "shape", device=...)`` builds one from the configs below — the published
``config.json`` values of each checkpoint, cited per entry — on ``device="meta"`` when only shapes and
parameter counts are needed (no memory), or materialised on a real device for timings. Tokenizers
are the same locally written ones as the tiny profile (the real CLIP BPE for the SD families).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

# -- Stable Diffusion 1.x (https://huggingface.co/CompVis/stable-diffusion-v1-4, */config.json) ----------
SD1_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# openai/clip-vit-large-patch14 text tower (the SD1.x text_encoder); eos 2 = legacy argmax pooling, as shipped.
CLIP_L_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
SD1_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
}

# -- SDXL base 1.0 (https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0, */config.json) -------
SDXL_UNET = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
SDXL_VAE = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
# laion/CLIP-ViT-bigG-14 text tower as shipped in SDXL's text_encoder_2
CLIP_BIGG_TEXT = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 1280,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
SDXL_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}

# -- SD2 inpainting (https://huggingface.co/stabilityai/stable-diffusion-2-inpainting, */config.json) -----
SD2_INPAINT_UNET = {
    **SD1_UNET,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "in_channels": 9,
    "use_linear_projection": True,
}
# laion/CLIP-ViT-H-14 text tower, penultimate layer kept (23 of 24), as shipped in SD2's text_encoder
CLIP_H_TEXT = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 512,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

# -- InstructPix2Pix (https://huggingface.co/timbrooks/instruct-pix2pix): SD1.5 with an 8-channel input ---
PIX2PIX_UNET = {**SD1_UNET, "in_channels": 8}

# -- DINO ViT-S/16 (https://huggingface.co/facebook/dino-vits16/blob/main/config.json) -------------------
DINO_VITS16 = {
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "image_size": 224,
    "patch_size": 16,
    "qkv_bias": True,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
}

# -- Qwen2.5-1.5B-Instruct (https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json) -----
QWEN25_1_5B = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}

# open_clip's own built-in configs (no download): OpenAI weights were trained with QuickGELU.
CLIP_SCORER = {"ViT-B-32": "ViT-B-32-quickgelu", "ViT-L-14": "ViT-L-14-quickgelu"}

# Published parameter counts (for the shape tests): name -> (count, where it is stated).
PUBLISHED_PARAMS = {
    "sd1_unet": (859_520_964, "SD1.x UNet, diffusers model card / CompVis README: 860M"),
    "sdxl_unet": (2_567_463_684, "SDXL report (Podell et al. 2023): 2.6B UNet"),
    "sd_vae": (83_653_863, "SD VAE (kl-f8): 84M"),
    "clip_l_text": (123_060_480, "CLIP ViT-L/14 text encoder: 123M"),
    "qwen25_1_5b": (1_543_714_304, "Qwen2.5 report: 1.54B parameters"),
    "sam_vit_h": (641_090_608, "SAM (Kirillov et al. 2023): ViT-H, 636M image encoder, 641M total"),
    "dino_vits16": (21_665_664, "DINO ViT-S/16: 21M backbone"),
}


def _clip_tokenizer(pad_token: str | None = None):
    from transformers import CLIPTokenizer

    from core.zoo.clip_bpe import EOS, write_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer(Path(tmp) / "tok", pad_token=pad_token or EOS)
        return CLIPTokenizer.from_pretrained(str(Path(tmp) / "tok"))


def _text_encoder(cfg: dict, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(CLIPTextConfig(**cfg))


@contextlib.contextmanager
def building(device: str, dtype=None) -> Iterator[None]:
    """Construct modules directly on ``device`` and, when given, in ``dtype``: the SDXL shape in
    float32 is ~14 GB, so building it in float16 halves the peak instead of casting afterwards."""
    previous = torch.get_default_dtype()
    with torch.device(device):
        if dtype is not None and device != "meta":
            torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


def sd_pipeline(
    pipeline_cls_name: str, unet_cfg: dict, text_cfg: dict, scheduler_cls_name: str, device: str, dtype=None
):
    """A Stable Diffusion pipeline of the given architecture with random weights (built directly on
    ``device`` in ``dtype``)."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    tokenizer = _clip_tokenizer()
    with building(device, dtype):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**SD_VAE)
        text_encoder = _text_encoder(text_cfg)
    scheduler = getattr(diffusers, scheduler_cls_name).from_config(SD1_SCHEDULER)
    kwargs = dict(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe = getattr(diffusers, pipeline_cls_name)(**kwargs)
    return pipe


def sdxl_pipeline(device: str, dtype=None):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer, tokenizer_2 = _clip_tokenizer(), _clip_tokenizer(pad_token="!")
    with building(device, dtype):
        unet = UNet2DConditionModel(**SDXL_UNET)
        vae = AutoencoderKL(**SDXL_VAE)
        text_encoder = _text_encoder({**CLIP_L_TEXT})
        text_encoder_2 = _text_encoder(CLIP_BIGG_TEXT, with_projection=True)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER),
    )
    return pipe


def count_params(module: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
