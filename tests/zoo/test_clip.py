"""The ``clip`` family: reproducible tiny build, real open_clip loading, embeddings a scorer can trust."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from core import zoo
from core.zoo.families import clip as clip_family

SUBJECTS = ("dog", "cat", "teapot")


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clip")
    zoo.get("clip").build_tiny(out)
    return out


@pytest.fixture(scope="module")
def scorer(tiny_dir) -> clip_family.ClipScorer:
    return zoo.load("clip", str(tiny_dir))


@pytest.fixture(scope="module")
def photos(dreambooth) -> list[Image.Image]:
    return [Image.open(dreambooth / "images" / s / "00.jpg").convert("RGB") for s in SUBJECTS]


def test_two_builds_are_byte_identical_safetensors(tiny_dir, tmp_path):
    zoo.get("clip").build_tiny(tmp_path)
    assert _digests(tmp_path) == _digests(tiny_dir)
    assert set(_digests(tiny_dir)) == {"open_clip_config.json", "open_clip_model.safetensors"}


def test_loads_as_eval_scorer_named_after_its_source(scorer, tiny_dir):
    assert isinstance(scorer, clip_family.ClipScorer)
    assert scorer.name == str(tiny_dir.resolve())
    assert not scorer.model.training


def test_image_embeddings_are_unit_norm_and_batch_independent(scorer, photos):
    batch = scorer.encode_images(photos)
    assert batch.shape == (len(photos), scorer.embed_dim) and batch.dtype == torch.float32
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(len(photos)), atol=1e-5, rtol=0)
    again = scorer.encode_images(photos)
    torch.testing.assert_close((batch * again).sum(-1), torch.ones(len(photos)), atol=1e-5, rtol=0)
    one_by_one = torch.cat([scorer.encode_images([p]) for p in photos])
    torch.testing.assert_close(batch, one_by_one, atol=1e-5, rtol=0)
    torch.testing.assert_close(scorer.encode_images(photos, batch_size=2), batch, atol=1e-5, rtol=0)
    cosines = batch @ batch.T
    assert cosines[0, 1] < 0.9999, "different photos must not collapse onto one embedding"


def test_text_embeddings_use_the_real_clip_tokenizer(scorer):
    tokens = scorer.tokenizer(["a photo of a dog"])
    assert tokens.shape == (1, 77)
    assert tokens[0, 0].item() == 49406 and 49407 in tokens[0].tolist()  # <start_of_text> ... <end_of_text>
    texts = ["a photo of a dog", "a photo of a teapot", "a very long prompt " * 40]
    emb = scorer.encode_texts(texts, batch_size=2)
    assert emb.shape == (3, scorer.embed_dim) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(scorer.encode_texts(texts[:1]), emb[:1], atol=1e-5, rtol=0)
    assert (emb[0] @ emb[1]).item() < 0.9999


def test_a_directory_without_weights_is_refused_not_randomly_initialised(tiny_dir, tmp_path):
    shutil.copy(tiny_dir / "open_clip_config.json", tmp_path)
    with pytest.raises(zoo.ModelNotFoundError, match="could not be loaded"):
        zoo.load("clip", str(tmp_path))


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tiny_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    shutil.copy(tiny_dir / "open_clip_config.json", tmp_path)
    torch.save({"visual.proj": Payload()}, tmp_path / "open_clip_pytorch_model.bin")
    with pytest.raises(zoo.UnsafeWeightsError, match="safetensors"):
        zoo.load("clip", str(tmp_path))
    assert not marker.exists()


def test_reference_syntax_maps_onto_open_clip():
    assert clip_family._open_clip_args("hf-hub:timm/vit_large_patch14_clip_224.openai") == (
        "hf-hub:timm/vit_large_patch14_clip_224.openai",
        {},
    )
    assert clip_family._open_clip_args("timm/vit_base_patch32_clip_224.openai")[0] == (
        "hf-hub:timm/vit_base_patch32_clip_224.openai"
    )
    # OpenAI weights were trained with QuickGELU; the plain ViT-B-32 config would silently use GELU.
    assert clip_family._open_clip_args("ViT-B-32/openai") == (
        "ViT-B-32",
        {"pretrained": "openai", "force_quick_gelu": True},
    )
    assert clip_family._open_clip_args("ViT-L/14/openai") == (
        "ViT-L-14",
        {"pretrained": "openai", "force_quick_gelu": True},
    )
    assert clip_family._open_clip_args("ViT-L-14/laion2b_s32b_b82k")[1]["force_quick_gelu"] is False
    with pytest.raises(ValueError, match="no pretrained tag 'nope'"):
        clip_family._open_clip_args("ViT-B-32/nope")


@pytest.mark.parametrize(
    "ref", [clip_family.PRODUCTION, "ViT-L-14/openai", "hf-hub:timm/vit_large_patch14_clip_224.openai"]
)
def test_production_reference_offline_fails_fast_with_the_zoo_message(ref, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert zoo.get("clip").production == "hf-hub:timm/vit_base_patch32_clip_224.openai"
    start = time.perf_counter()
    with pytest.raises(zoo.ModelNotFoundError, match="not in the local Hugging Face cache"):
        zoo.load("clip", ref)
    assert time.perf_counter() - start < 15
