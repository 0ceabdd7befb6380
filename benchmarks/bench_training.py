"""JeDi training throughput: Ray Train vs a plain PyTorch loop, and 1 → 2 workers on CPU.

Both sides train the same tiny model on the same sets with the same loss; the plain loop runs in this
process without Ray, on sets decoded once up front. The sets are a rendered ToyWorld S3 dataset large
enough that no side starts a second epoch: with a handful of sets (the DreamBooth folders: 4 rows) Ray
Data re-reads and re-decodes the source every other step and the ratio measured epoch start-up (0.34x),
not training. Images/s are taken from the last reporting window (after start-up). Target: Ray Train /
plain >= 0.9.
"""

from __future__ import annotations

import tempfile
import time

import torch

from core.config import load_config

STEPS, WINDOW = 60, 20
SETS = 4 * STEPS * 2  # sets_per_worker = 2, up to 2 workers: no second epoch


def _cfg(tmp: str, name: str, workers: int, data: str):
    return load_config(
        "tiny",
        [
            f"train.jedi.run.storage_path={tmp}",
            f"train.jedi.run.name={name}",
            f"train.jedi.steps={STEPS}",
            f"train.jedi.run.log_every={WINDOW}",
            f"train.jedi.run.checkpoint_every={STEPS}",
            f"train.jedi.scaling.num_workers={workers}",
            "train.jedi.scaling.cpus_per_worker=0.5",
            f"train.jedi.data.sources=[{{kind: s3, path: {data}}}]",
            "train.jedi.data.resolution=32",
            "train.jedi.data.min_set_size=3",
            "train.jedi.data.max_set_size=3",
        ],
    )


def plain_loop(cfg) -> float:
    """Images/s of the same training step in one process, no Ray."""
    from core.jedi import jedi_loss
    from core.s3 import read_training_sets
    from training.jedi.batches import SourceCursor, next_micro_batch
    from training.jedi.data import decode_set, load_size
    from training.jedi.models import load_models
    from training.jedi.sampling import set_generator
    from training.shell.optim import build_optimizer

    tcfg = cfg.train.jedi
    device = torch.device("cpu")
    torch.set_num_threads(1)  # a Ray worker with < 1 CPU runs single-threaded too
    models = load_models(cfg, device)
    opt = build_optimizer(models.unet.parameters(), tcfg.optim, False)
    src = tcfg.data.sources[0]
    rows = [decode_set(r, load_size(tcfg.data)) for r in read_training_sets(src.path).take_all()]
    cursor = SourceCursor("source0", "s3")

    def forever():
        while True:
            yield from rows

    it = forever()
    null = models.encode_text([""])
    images, start = 0, 0.0
    for step in range(STEPS):
        if step == STEPS - WINDOW:
            images, start = 0, time.perf_counter()
        mb = next_micro_batch(
            [it],
            [cursor],
            [1.0],
            seed=0,
            step=step,
            micro=0,
            sets=tcfg.sets_per_worker,
            min_set_size=3,
            max_set_size=3,
            resolution=tcfg.data.resolution,
            min_scale=tcfg.data.min_crop_scale,
            flip=True,
        )
        gens = [set_generator(0, step, 0, s, device) for s in mb.set_ids]
        mean, std = models.latent_posterior(mb.pixels)
        latents = mean + std * torch.cat(
            [torch.randn(mean[i * 3 : (i + 1) * 3].shape, generator=g) for i, g in enumerate(gens)]
        )
        loss = jedi_loss(
            models.unet,
            models.noise_scheduler,
            latents,
            models.encode_text(mb.captions),
            null,
            set_size=3,
            generator=gens,
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models.unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        images += latents.shape[0]
    return images / (time.perf_counter() - start)


def run() -> dict:
    from core.config.toyworld import ToyWorldDataSection
    from core.ray_runtime import init_ray
    from core.toyworld.dataset import write_dataset
    from training.jedi.recipe import fit

    with tempfile.TemporaryDirectory() as tmp:
        init_ray(num_cpus=2)
        data = f"{tmp}/toyworld"
        write_dataset(data, ToyWorldDataSection(sets=SETS, singles=1, shard_size=SETS // 4), seed=0)
        plain = plain_loop(_cfg(tmp, "plain", 1, data))
        one = fit(_cfg(tmp, "one", 1, data)).metrics["images_per_s"]
        two = fit(_cfg(tmp, "two", 2, data)).metrics["images_per_s"]
    ratio = one / plain
    print(f"   plain loop: {plain:.1f} img/s; Ray Train 1 worker: {one:.1f} img/s -> ratio {ratio:.2f} (target >= 0.9)")
    print(f"   Ray Train 2 workers: {two:.1f} img/s -> scaling {two / one:.2f}x on {torch.get_num_threads()} threads")
    print("   GPU entry (SD1.4 at 512², set size 3): not run here - needs a GPU machine")
    return {
        "plain_images_per_s": plain,
        "ray_1_worker_images_per_s": one,
        "ray_2_workers_images_per_s": two,
        "ratio_ray_over_plain": ratio,
        "target_ratio": 0.9,
        "scaling_1_to_2": two / one,
    }
