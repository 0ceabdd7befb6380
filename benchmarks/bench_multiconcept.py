"""Concept-driven EM: the mask IoU curve on a synthetic scene whose true masks are known.

The scene is ``s3jedi multiconcept scene`` (dog and cat photos pasted as ellipses onto a blurred
backpack photo, 2 images, 64 px: the tiny profile's resolution). Three measurements in one run:

1. **EM**: the tiny profile's warm start (``warmup_steps`` unmasked token steps) and phase 1
   (``em_steps`` token steps, an E-step every ``estep_every``) through ``run_scene`` (Ray Train local
   mode), its IoU curve from ``iou.json``.
2. **No-update baseline, paired**: a second tuner that never trains re-estimates the masks at the
   same steps with the same random timesteps and noise (``estimate_masks(step)`` is keyed by the
   step), so EM and baseline differ only in the learned tokens; the ratio EM / baseline is taken at
   every E-step.
3. **Ground-truth masks (paper 004's upper bound)**: the same training (warm start, then the token
   steps) on the *true* masks (no E-step), then one E-step: how far the attention maps of this model
   can be pulled onto a concept at all — the ceiling that EM could reach if its own masks were right.

The tiny UNet is random, so its attention carries no object knowledge: the numbers measure the
mechanics on this model, not the method's quality on SD1.4 (that needs a GPU and ``-c sd14``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from core.config import load_config
from core.paths import REPO_ROOT

PHOTOS = REPO_ROOT.parent / "shared" / "dreambooth" / "images"
JOINT_STEPS = 0  # phase 2 keeps the masks fixed: it cannot change the IoU curve
LAMBDAS = (0.01, 1.0)
"""The attention-loss weight: the default (Break-A-Scene's 0.01) and 100x, to see whether the loss can
move this model's attention at all."""


def _scene_iou(tuner, masks: np.ndarray) -> float:
    from training.multiconcept.masks import scene_iou

    return float(np.nanmean(scene_iou(masks, tuner.scene.truth, tuner.scene.present)))


def _em(tmp: Path, scene_path: str, lambda_attn: float) -> tuple[dict, float]:
    """One EM run (phase 1 only) through ``run_scene`` in Ray Train's local mode; its summary and seconds."""
    from training.multiconcept.runner import run_scene

    cfg = _config(tmp, lambda_attn)
    start = time.perf_counter()
    summary = run_scene(cfg, scene_path, in_process=True)
    return summary, time.perf_counter() - start


def _config(tmp: Path, lambda_attn: float):
    return load_config(
        "tiny",
        [
            f"multiconcept.run.storage_path={tmp / 'runs'}",
            f"multiconcept.run.name=lambda-{lambda_attn:g}",
            f"multiconcept.subject_id='{{scene}}-lambda-{LAMBDAS.index(lambda_attn)}'",
            f"finetune.store={tmp / 'store'}",
            f"multiconcept.joint_steps={JOINT_STEPS}",
            f"multiconcept.lambda_attn={lambda_attn}",
            "ray.num_cpus=2",
        ],
    )


def _oracle(cfg, scene, scene_path: str) -> tuple[float, float]:
    """The warm start and the token steps on the true masks, then one E-step at the last step: its IoU
    and the seconds."""

    tuner = _recipe(cfg, scene, scene_path)
    tuner.set_masks(scene.truth)
    start = time.perf_counter()
    for step in range(1, cfg.multiconcept.em_end + 1):
        tuner.step(tuner.batch(step))  # no E-step: the masks stay the true ones
    seconds = time.perf_counter() - start
    return _scene_iou(tuner, tuner.estimate_masks(cfg.multiconcept.em_end)), seconds


def _recipe(cfg, scene, scene_path: str):
    """The scene's recipe set up in this process, on ``scene`` as loaded."""
    import torch

    from training.multiconcept.em import SceneRecipe

    recipe = SceneRecipe(cfg, scene=scene_path, subject_id=f"{scene.name}-oracle")
    recipe.load(scene, torch.device("cpu"), "fp32")
    return recipe


def run() -> dict:
    import torch

    from training.multiconcept.em import estep_due
    from training.multiconcept.scene import load_scene
    from training.multiconcept.synthetic import synthetic_scene

    torch.set_num_threads(1)  # as a Ray worker holding one CPU; 2 threads only thrash on a shared 2-core machine
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        scene_path = synthetic_scene(PHOTOS, str(tmp / "scene"), side=64)
        base_cfg = _config(tmp, LAMBDAS[0])
        mc = base_cfg.multiconcept
        scene = load_scene(scene_path, mc)
        frozen = _recipe(base_cfg, scene, scene_path)
        steps = [step for step in range(mc.em_end + 1) if estep_due(step, mc)]
        baseline_masks = [frozen.estimate_masks(step) for step in steps]
        baseline = [_scene_iou(frozen, masks) for masks in baseline_masks]
        baseline_per_concept = _per_concept(frozen, baseline_masks[0])
        for lam in LAMBDAS:
            summary, em_s = _em(tmp, scene_path, lam)
            curve = summary["iou"]["curve"]
            assert [p["step"] for p in curve] == steps, (curve, steps)
            em = [p["mean_iou"] for p in curve]
            oracle_iou, oracle_s = _oracle(_config(tmp, lam), scene, scene_path)
            results[f"{lam:g}"] = {
                "em_iou": em,
                "ratio_em_over_no_update": [e / b for e, b in zip(em, baseline, strict=True)],
                "final_ratio": em[-1] / baseline[-1],
                "per_concept_final": curve[-1]["per_concept"],
                "oracle_iou": oracle_iou,
                "oracle_ratio_over_no_update": oracle_iou / baseline[-1],
                "em_run_s": em_s,
                "oracle_s": oracle_s,
            }

    print("   step  no-update  " + "  ".join(f"EM λ={lam:g} (ratio)" for lam in LAMBDAS))
    for i, step in enumerate(steps):
        cells = "  ".join(f"{r['em_iou'][i]:.3f} ({r['ratio_em_over_no_update'][i]:.2f})    " for r in results.values())
        print(f"   {step:4d}    {baseline[i]:.3f}     {cells}")
    for lam, r in results.items():
        print(
            f"   λ={lam}: final EM / no-update {r['final_ratio']:.2f}; ground-truth masks (upper bound) "
            f"{r['oracle_iou']:.3f} ({r['oracle_ratio_over_no_update']:.2f}x no-update); "
            f"EM run {r['em_run_s']:.0f} s, oracle {r['oracle_s']:.0f} s"
        )
    return {
        "scene": {"images": 2, "side": 64, "concepts": ["dog", "cat", "background"]},
        "warmup_steps": mc.warmup_steps,
        "em_steps": mc.em_steps,
        "estep_every": mc.estep_every,
        "estep_timesteps": mc.estep_timesteps,
        "steps": steps,
        "no_update_iou": baseline,
        "per_concept_no_update": baseline_per_concept,
        "by_lambda_attn": results,
        "final_ratio": results[f"{LAMBDAS[0]:g}"]["final_ratio"],
    }


def _per_concept(tuner, masks: np.ndarray) -> list[float]:
    from training.multiconcept.masks import scene_iou

    ious = scene_iou(masks, tuner.scene.truth, tuner.scene.present)
    return [float(np.nanmean(ious[:, k])) for k in range(ious.shape[1])]
