"""``s3jedi train precompute-latents``: encode every training set with the VAE once, as a Ray Data job.

For large runs the VAE encode is a large share of each step and the images are re-decoded every
epoch. Precomputing writes the VAE posterior (mean and std, fp16) of every image at the training
resolution, centre-cropped; training on ``kind: latents`` then samples the posterior per step
(exactly as on-the-fly encoding does) but without crop or flip augmentation and without a VAE
encode per step (the VAE is still loaded once, for validation samples and the export).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from core import storage
from core.config import S3JediConfig, save_config
from core.logs import get_logger
from core.ray_runtime import init_ray
from training.jedi.data import source_dataset

log = get_logger("train.precompute")


class VaeEncoder:
    """Ray Data actor: one VAE per actor, loaded once."""

    def __init__(self, config: dict, device: str):
        import torch

        from core import zoo

        cfg = S3JediConfig.model_validate(config)
        self.device = torch.device(device)
        self.vae = zoo.load("sd", cfg.models.sd, home=cfg.home).vae.to(self.device).eval()
        self.resolution = cfg.train.jedi.data.resolution

    def __call__(self, row: dict) -> dict:
        import torch
        from PIL import Image

        out = {"set_id": row["set_id"], "captions": list(row["captions"]), "error": row["error"]}
        if row["error"]:
            out["latent_mean"] = out["latent_std"] = np.zeros((0, 1, 1, 1), dtype=np.float16)
            return out
        pixels = np.stack(
            [
                np.asarray(Image.fromarray(p).resize((self.resolution, self.resolution), Image.Resampling.BICUBIC))
                for p in np.asarray(row["pixels"])
            ]
        )
        x = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            dist = self.vae.encode(x).latent_dist
        scale = self.vae.config.scaling_factor
        out["latent_mean"] = (dist.mean * scale).cpu().numpy().astype(np.float16)
        out["latent_std"] = (dist.std * scale).cpu().numpy().astype(np.float16)
        return out


@dataclass(frozen=True)
class PrecomputeSummary:
    out: str
    sets: int
    skipped: int


def precompute_latents(cfg: S3JediConfig, out: str, actors: int = 1) -> PrecomputeSummary:
    import ray.data

    init_ray(cfg.ray)
    tcfg = cfg.train.jedi
    image_sources = [s for s in tcfg.data.sources if s.kind != "latents"]
    if not image_sources:
        raise ValueError("train.jedi.data.sources: no image sources to encode (all are already latents)")
    datasets = [source_dataset(s, tcfg.data, cfg.seed) for s in image_sources]
    ds = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    use_gpu = tcfg.scaling.use_gpu
    encoded = ds.map(
        VaeEncoder,
        fn_constructor_kwargs={"config": cfg.model_dump(mode="json"), "device": "cuda" if use_gpu else "cpu"},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if use_gpu else 0,
    ).materialize()
    skipped = encoded.filter(lambda r: bool(r["error"])).count()
    dest = storage.resolve(out)
    encoded.filter(lambda r: not r["error"]).drop_columns(["error"]).write_parquet(dest)
    summary = PrecomputeSummary(out=dest, sets=encoded.count() - skipped, skipped=skipped)
    if not storage.is_uri(dest):
        save_config(cfg, storage.local_path(dest))
        (storage.local_path(dest) / "precompute-summary.json").write_text(json.dumps(summary.__dict__, indent=1))
    log.info("latents written", out=dest, sets=summary.sets, skipped=skipped)
    return summary
