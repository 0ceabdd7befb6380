"""A fine-tuning method from outside the code base, defined in this module, taken through fine-tune →
publish → ``/v1/generate`` → evaluation.

Normalised textual inversion: textual inversion whose inference step gives the learned embedding the
vocabulary's mean norm before a prompt is drawn (learned rows drift far from the norm of real words).
Registering it is all it takes; the serving app's config names this module in ``finetune.plugins``
(``tests/serving/conftest.py``), so the Serve replicas, the Ray Train workers and the evaluation
actors, which each validate the config they are sent, register it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

from core.methods import Method, register
from core.methods.textual_inversion import plan as ti_plan
from core.methods.tokens import find_token

NAME = "ti-norm"


def plan(settings):
    return replace(ti_plan(settings), method=NAME)


class NormalisedEmbedding:
    def default_steps(self, settings) -> int:
        return 1

    @contextmanager
    def applied(self, pipe, card, subject_dir, prompt, settings, steps, seed) -> Iterator[None]:
        weight = pipe.text_encoder.get_input_embeddings().weight
        ids = find_token(pipe.tokenizer, card.tokens[0], weight.device).ids
        trained = weight.detach()[ids].clone()
        with torch.no_grad():
            mean_norm = weight.norm(dim=-1).mean()
            weight[ids] = trained * (mean_norm / trained.norm(dim=-1, keepdim=True))
        try:
            yield
        finally:
            with torch.no_grad():
                weight[ids] = trained


register(Method(NAME, "normalised textual inversion", plan, NormalisedEmbedding()))


@pytest.mark.slow
def test_a_method_defined_outside_the_code_base_goes_all_the_way(served, dreambooth, tmp_path):
    import pandas as pd

    from core.config import load_config
    from evaluation.job import run_evaluation
    from tests.serving.test_api import post
    from training.finetune.runner import finetune

    settings = [
        f"finetune.plugins=[{__name__}]",
        f"finetune.store={served.store}",
        f"finetune.run.storage_path={tmp_path / 'runs'}",
        "finetune.resolution=32",
        "finetune.ti.train.steps=2",
        "finetune.scaling.cpus_per_worker=0.5",
        f"evaluation.methods=[{NAME}]",
        f"evaluation.finetuned.store={served.store}",
        "evaluation.selection.subjects=[dog]",
        "evaluation.selection.prompts=1",
        "evaluation.selection.samples=1",
        "evaluation.scoring.masked=false",
        "evaluation.compute.cpus_per_actor=0.3",
    ]
    cfg = load_config("tiny", settings)
    (outcome,) = finetune(cfg, [NAME], str(dreambooth / "images" / "dog")).outcomes
    assert outcome.status == "done", outcome.error
    assert outcome.subject_id == f"dog-{NAME}" and outcome.metrics["step"] == 2

    reply = post(served, "/v1/generate", {"prompts": ["a photo of {0}"], "steps": 2, "subject_id": outcome.subject_id})
    assert reply.status_code == 200, reply.text
    assert reply.json()["tto_steps"] == 1 and reply.json()["images"][0]["prompt"] == "a photo of <sks>"

    result = run_evaluation(cfg, tmp_path / "eval")
    assert result.scored_now == result.planned == 1
    frame = pd.read_parquet(result.out_dir / "scores.parquet")
    (row,) = frame.to_dict("records")
    assert row["prompt"] == "a <sks> dog in the jungle" and row["inputs"] == ""
    assert -1 <= row["clip_t"] <= 1 and -1 <= row["clip_i"] <= 1 and -1 <= row["dino"] <= 1
    rows = result.summary["protocols"][0]["rows"]
    assert [(r["method"], r["subject"], r["images"]) for r in rows] == [(NAME, "dog", 1), (NAME, "all", 1)]
