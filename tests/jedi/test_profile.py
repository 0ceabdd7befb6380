"""The production profile trains and samples JeDi as paper 002 describes it (§3.3 Eq. 3, §4)."""

from __future__ import annotations

import pytest

from core.config import load_config
from core.jedi.guidance import DEFAULT_GUIDANCE, DEFAULT_IMAGE_GUIDANCE_SCALE


def test_sd14_training_follows_section_4():
    jedi = load_config("sd14").train.jedi
    assert jedi.optim.lr == pytest.approx(5e-5)
    assert jedi.scaling.num_workers * jedi.sets_per_worker * jedi.grad_accum == 2048, "effective batch 2048"
    assert (jedi.data.min_set_size, jedi.data.max_set_size) == (2, 4)
    sources = jedi.data.sources
    assert sorted(s.kind for s in sources) == ["captions", "folder", "s3", "video"]
    assert len({s.weight for s in sources}) == 1, "the four sources with equal probability"


@pytest.mark.parametrize("profile", ["tiny", "sd14"])
def test_image_guidance_is_on_wherever_jedi_samples(profile):
    cfg = load_config(profile)
    for where in (cfg.evaluation.generation, cfg.serving.defaults, cfg.toyworld.eval):
        assert where.guidance == DEFAULT_GUIDANCE == "paper"
        assert where.image_guidance_scale == DEFAULT_IMAGE_GUIDANCE_SCALE != 1.0
