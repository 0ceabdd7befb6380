"""The ``dino`` family: reproducible tiny ViT, transformers loading (safetensors only), stable CLS features."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from core import zoo
from core.zoo.families import dino as dino_family

SUBJECTS = ("dog", "cat", "teapot")


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _evil_pickle(path: Path, marker: Path) -> None:
    """A checkpoint whose unpickling creates ``marker``: proof that something unpickled it."""

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"embeddings.cls_token": Payload()}, path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dino")
    zoo.get("dino").build_tiny(out)
    return out


@pytest.fixture(scope="module")
def scorer(tiny_dir) -> dino_family.DinoScorer:
    return zoo.load("dino", str(tiny_dir))


@pytest.fixture(scope="module")
def photos(dreambooth) -> list[Image.Image]:
    return [Image.open(dreambooth / "images" / s / "00.jpg") for s in SUBJECTS]


def test_two_builds_are_byte_identical_safetensors(tiny_dir, tmp_path):
    zoo.get("dino").build_tiny(tmp_path)
    assert _digests(tmp_path) == _digests(tiny_dir)
    assert set(_digests(tiny_dir)) == {"config.json", "model.safetensors", "preprocessor_config.json"}


def test_processor_matches_the_model(scorer, tiny_dir):
    assert scorer.name == str(tiny_dir.resolve())
    assert not scorer.model.training
    size = scorer.model.config.image_size
    assert scorer.processor.size == {"height": size, "width": size}
    assert list(scorer.processor.image_mean) == dino_family.IMAGENET_MEAN
    assert list(scorer.processor.image_std) == dino_family.IMAGENET_STD


def test_cls_features_are_unit_norm_and_batch_independent(scorer, photos):
    batch = scorer.encode_images(photos)
    assert batch.shape == (len(photos), scorer.model.config.hidden_size) and batch.dtype == torch.float32
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(len(photos)), atol=1e-5, rtol=0)
    again = scorer.encode_images(photos)
    torch.testing.assert_close((batch * again).sum(-1), torch.ones(len(photos)), atol=1e-5, rtol=0)
    one_by_one = torch.cat([scorer.encode_images([p]) for p in photos])
    torch.testing.assert_close(batch, one_by_one, atol=1e-5, rtol=0)
    torch.testing.assert_close(scorer.encode_images(photos, batch_size=2), batch, atol=1e-5, rtol=0)
    assert (batch[0] @ batch[1]).item() < 0.9999, "different photos must not collapse onto one feature"
    # The feature is the CLS token of the final (layer-normed) hidden state, as in the DINO score.
    pixels = scorer.processor(images=[photos[0].convert("RGB")], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls = scorer.model(pixel_values=pixels).last_hidden_state[:, 0]
    torch.testing.assert_close(batch[:1], torch.nn.functional.normalize(cls, dim=-1), atol=1e-5, rtol=0)


def test_a_pickle_only_checkpoint_is_refused_before_it_runs(tiny_dir, tmp_path):
    marker = tmp_path / "pwned"
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(tiny_dir / name, tmp_path)
    _evil_pickle(tmp_path / "pytorch_model.bin", marker)
    with pytest.raises(zoo.UnsafeWeightsError, match="only pickled weights"):
        zoo.load("dino", str(tmp_path))
    assert not marker.exists()


def test_safetensors_win_over_a_pickle_lying_next_to_them(tiny_dir, tmp_path, photos):
    marker = tmp_path / "pwned"
    for p in tiny_dir.iterdir():
        shutil.copy(p, tmp_path)
    _evil_pickle(tmp_path / "pytorch_model.bin", marker)
    scorer = zoo.load("dino", str(tmp_path))
    assert not marker.exists()
    assert scorer.encode_images(photos[:1]).shape[0] == 1


def test_production_reference_offline_fails_fast_with_the_zoo_message(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert zoo.get("dino").production == "facebook/dino-vits16"
    start = time.perf_counter()
    with pytest.raises(zoo.ModelNotFoundError, match="not in the local Hugging Face cache"):
        zoo.load("dino", "facebook/dino-vits16")
    assert time.perf_counter() - start < 15
