"""ToyWorld: personalization measured on the shipped checkpoints, and what it costs.

1. Identity transfer: the experiment (``s3jedi toyworld eval``) with ``TRIALS`` seeds per novel
   subject; JeDi with 2 references at the default settings against the floor (base model, no
   references) measured in the same run; ratio to chance identity.
2. Sampling cost per image: JeDi with 2 references (a set of 3 denoised jointly, default guidance) vs
   the base model drawing the same image alone (text guidance); the price of personalization without
   fine-tuning.
3. ``TOYWORLD_BENCH_FULL=1`` also reruns the whole recipe (``s3jedi toyworld train``, ~2 h on 2 CPU
   cores) into a temporary directory and evaluates its output: how the shipped checkpoints were made.
"""

from __future__ import annotations

import os
import tempfile

from benchmarks.common import timeit_interleaved
from core.config import load_config

TRIALS = 3


def _experiment(cfg) -> dict:
    from evaluation.toyworld.experiment import CHANCE, run_experiment

    result = run_experiment(cfg)
    floor = result.row("floor").metrics["identity"]
    k2 = result.row("jedi-k2").metrics
    print(
        f"   identity: floor {floor['mean']:.3f}, JeDi-2 at the defaults {k2['identity']['mean']:.3f}; "
        f"chance {CHANCE['identity']:.3f}"
    )
    print(
        f"   JeDi-2 identity / chance: {k2['identity']['mean'] / CHANCE['identity']:.1f}x; "
        f"loss gap {100 * k2['loss_gap']['mean']:+.1f}%"
    )
    return {
        "trials": len(result.trials),
        "rows": {r.condition.key: r.metrics for r in result.rows},
        "identity_over_chance": k2["identity"]["mean"] / CHANCE["identity"],
        "seconds": result.seconds,
    }


def _sampling_cost(cfg) -> dict:
    import torch

    from core.threads import torch_threads
    from evaluation.toyworld.experiment import load_pipeline, pipeline_size
    from evaluation.toyworld.trials import make_trials

    ev = cfg.toyworld.eval
    jedi, base = load_pipeline(ev.jedi), load_pipeline(ev.base)
    for pipe in (jedi, base):
        pipe.set_progress_bar_config(disable=True)
    size = pipeline_size(jedi)
    trials = make_trials(cfg.seed, 1, 2, size)

    def draw(pipe, coupled: bool):
        text_only = {"guidance": "decomposed", "guidance_scale": ev.guidance_scale, "image_guidance_scale": 1.0}
        return pipe(
            [t.references(2 if coupled else 1, size) for t in trials],
            [t.prompt for t in trials],
            num_inference_steps=ev.steps,
            **({} if coupled else text_only),
            coupled=coupled,
            generator=[torch.Generator().manual_seed(t.seed) for t in trials],
        )

    # The base model with coupling off: the reference cannot reach the target; one image per set
    # would be the plain text-to-image cost, so draw it with the plain layout (set of 1 + 1 unseen).
    with torch_threads(ev.threads):  # as the experiment samples: more threads only oversubscribe 16 px models
        timed = timeit_interleaved({"jedi": lambda: draw(jedi, True), "base": lambda: draw(base, False)}, repeat=3)
    personalized, alone = timed["jedi"], timed["base"]
    ratio = personalized["median_s"] / alone["median_s"]
    print(
        f"   sampling, JeDi 2 refs / base text-to-image: {ratio:.2f}x "
        f"({1000 * personalized['median_s'] / len(trials):.0f} vs {1000 * alone['median_s'] / len(trials):.0f} "
        "ms per image)"
    )
    return {"images": len(trials), "jedi_k2": personalized, "base": alone, "ratio": ratio}


def run() -> dict:
    cfg = load_config(
        "tiny",
        [
            f"toyworld.eval.trials={TRIALS}",
            f"toyworld.eval.out={tempfile.mkdtemp(prefix='bench-toyworld-')}",
            "toyworld.eval.finetune_methods=[]",  # JeDi against its floor; the fine-tuning rows are `toyworld eval`'s
        ],
    )
    result = {"experiment": _experiment(cfg), "sampling": _sampling_cost(cfg)}
    if os.environ.get("TOYWORLD_BENCH_FULL") == "1":
        from training.toyworld.recipe import run_recipe

        work = tempfile.mkdtemp(prefix="bench-toyworld-recipe-")
        full = load_config(
            "tiny",
            [
                f"toyworld.train.out={work}/work",
                f"toyworld.train.ship={work}/ship",
                f"toyworld.eval.jedi={work}/ship/jedi",
                f"toyworld.eval.base={work}/ship/base",
                f"toyworld.eval.out={work}/eval",
                "toyworld.eval.finetune_methods=[]",
            ],
        )
        result["recipe"] = run_recipe(full)
        result["recipe_experiment"] = _experiment(full)
    return result
