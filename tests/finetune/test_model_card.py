"""A fine-tuned subject's README.md: Hub front matter, a base model diffusers loads, and a usage
snippet that runs as written."""

from __future__ import annotations

import re

import yaml

from core import zoo
from core.subjects import read_card
from tests.finetune.conftest import ft_config, make_tuner
from training.finetune.export import write_subject


def test_a_subject_card_names_its_base_and_its_snippet_draws_the_subject(zoo_home, tmp_path, dog_photos):
    tuner = make_tuner(ft_config(tmp_path), "ti", dog_photos)
    tuner.train_step(1)
    out = tmp_path / "dog-ti"
    write_subject(tuner, out, {"loss": 0.25})
    card = read_card(out)
    text = (out / "README.md").read_text()
    _, front, body = text.split("---", 2)
    meta = yaml.safe_load(front)
    assert meta["base_model"] == zoo.resolve("sd", "tiny") != card.base_model == "tiny"
    assert meta["instance_prompt"] == "a photo of <sks>" and "textual-inversion" in meta["tags"]
    assert re.search(r"\| stage \w+ \| `3 steps: trains tokens, adamw lr ", body), body
    assert "| final loss | `0.25` |" in body and "its images are noise" in body

    snippet = re.search(r"```python\n(.*?)```", body, re.S).group(1).replace("path/to/this/folder", str(out))
    snippet = snippet.replace(", generator=", ", num_inference_steps=2, height=32, width=32, generator=")
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    pipe = namespace["pipe"]
    row = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids("<sks>")]
    trained = tuner.models.text_encoder.get_input_embeddings().weight[tuner.token.ids[0]]
    assert row.detach().equal(trained.detach().to(row.dtype)), "the snippet did not load the learned token"
    assert namespace["image"].size == (32, 32)
