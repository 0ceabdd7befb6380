"""``s3jedi demo``: the main job on the tiny embedded default, end to end.

Today the end-to-end path is: build the tiny zoo, run the text-to-image base once, and run
finetuning-free personalization (``JeDiPipeline``) on real DreamBooth photos with the *untrained*
tiny JeDi model. Later jobs (S3 dataset build, JeDi training) are inserted here as they land, so the
demo always shows the whole system.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from core import zoo
from core.config import S3JediConfig, config_hash, save_config
from core.logs import get_logger

log = get_logger("demo")


def generate_sample(cfg: S3JediConfig, out_dir: Path) -> Path:
    import torch

    pipe = zoo.load("sd", cfg.models.sd, home=cfg.home)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(cfg.seed)
    image = pipe("a photo of a teapot", num_inference_steps=4, height=64, width=64, generator=generator).images[0]
    path = out_dir / "text_to_image.png"
    image.save(path)
    return path


def personalize(cfg: S3JediConfig, references: Path, out_dir: Path) -> Path:
    import torch
    from PIL import Image

    photos = sorted(p for p in references.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:3]
    if not photos:
        raise FileNotFoundError(f"--references: no .jpg/.png images in {references}")
    pipe = zoo.load("jedi", cfg.models.jedi, home=cfg.home)
    pipe.set_progress_bar_config(disable=True)
    refs = [Image.open(p) for p in photos]
    out = pipe(
        refs,
        ["a photo of the subject on the beach", "a photo of the subject in the snow"],
        num_inference_steps=4,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    grid = Image.new("RGB", (64 * (len(refs) + len(out.images)), 64))
    for i, img in enumerate([r.convert("RGB").resize((64, 64)) for r in refs] + out.images):
        grid.paste(img, (64 * i, 0))
    path = out_dir / "personalized.png"
    grid.save(path)
    return path


def run_demo(cfg: S3JediConfig, out_dir: Path, references: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir)
    steps: dict[str, dict] = {}

    start = time.perf_counter()
    results = zoo.build("tiny", home=cfg.home)
    steps["zoo build"] = {
        "seconds": round(time.perf_counter() - start, 2),
        "built": [r.family for r in results if r.status == "built"],
        "up to date": [r.family for r in results if r.status != "built"],
    }
    log.info("zoo ready", **{k: v for k, v in steps["zoo build"].items() if k == "seconds"})

    start = time.perf_counter()
    sample = generate_sample(cfg, out_dir)
    steps["text-to-image"] = {"seconds": round(time.perf_counter() - start, 2), "image": str(sample)}
    log.info("sample written", path=str(sample))

    start = time.perf_counter()
    grid = personalize(cfg, references, out_dir)
    steps["personalize (untrained tiny JeDi)"] = {"seconds": round(time.perf_counter() - start, 2), "grid": str(grid)}
    log.info("personalized grid written", path=str(grid), references=str(references))

    summary = {"profile": cfg.profile, "config_hash": config_hash(cfg), "steps": steps}
    (out_dir / "demo-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
