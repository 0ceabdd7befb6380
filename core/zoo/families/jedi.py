"""The JeDi family: a ``JeDiPipeline`` directory (widened SD UNet + VAE + text encoder).

No public JeDi checkpoint exists; production runs point ``models.jedi`` at the export of their own
training run (``s3jedi train jedi``). The tiny entry is the tiny SD pipeline widened at init, which
reproduces the base model exactly until it is trained.
"""

from __future__ import annotations

from pathlib import Path

from core.zoo.families.diffusion import SEED, build_tiny_sd
from core.zoo.family import Family
from core.zoo.safety import refuse_pickle_only_dir

MAX_SET_SIZE = 4


def build_tiny(out_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from core.jedi import JeDiPipeline

    base_dir = out_dir.parent / f".{out_dir.name}.base"
    base_dir.mkdir(parents=True, exist_ok=True)
    build_tiny_sd(base_dir)
    base = StableDiffusionPipeline.from_pretrained(str(base_dir), use_safetensors=True)
    JeDiPipeline.from_base(base, max_set_size=MAX_SET_SIZE).save_pretrained(str(out_dir), safe_serialization=True)
    import shutil

    shutil.rmtree(base_dir)
    assert SEED == 0  # the base is seeded by build_tiny_sd; widening adds only zeros


def read_spec(ref: str, home: Path | None = None):
    """The JeDi parameters of a configured model without loading its weights (reads the UNet config),
    so a driver can validate a job, e.g. a reference count, before any worker starts."""
    import json

    from core.jedi.unet import CONFIG_KEY, JeDiSpec
    from core.zoo import resolve

    source = resolve("jedi", ref, home)
    if source.startswith("shape"):
        return JeDiSpec(max_set_size=MAX_SET_SIZE)
    config = Path(source) / "unet" / "config.json"
    if not config.is_file():
        from huggingface_hub import hf_hub_download

        config = Path(hf_hub_download(source, "unet/config.json"))
    raw = json.loads(config.read_text()).get(CONFIG_KEY)
    if not raw:
        raise ValueError(f"models.jedi: {ref} is not a JeDi pipeline (no {CONFIG_KEY} in unet/config.json)")
    return JeDiSpec(**raw)


def load(source: str, *, device: str = "cpu", dtype=None):
    from core.jedi import JeDiPipeline

    refuse_pickle_only_dir(source, "jedi")
    kwargs = {"use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return JeDiPipeline.from_pretrained(source, **kwargs).to(device)


def build_shape(device: str = "cpu", dtype=None, variant: str | None = None):
    """SD1.4's architecture widened to JeDi (the configuration of the JeDi paper)."""
    from core.jedi import JeDiPipeline
    from core.zoo import shapes

    base = shapes.sd_pipeline(
        "StableDiffusionPipeline", shapes.SD1_UNET, shapes.CLIP_L_TEXT, "DDIMScheduler", device, dtype
    )
    return JeDiPipeline.from_base(base, max_set_size=MAX_SET_SIZE)


FAMILIES = [
    Family(
        name="jedi",
        summary="JeDi joint-image pipeline (JeDiPipeline): references + prompt -> personalized images",
        library="diffusers (core.jedi)",
        production="a trained export of `s3jedi train jedi` (no public checkpoint)",
        build_tiny=build_tiny,
        load=load,
        build_shape=build_shape,
    )
]
