"""The ``segmenter`` family (Segment Anything).

The tiny model is built into a temporary directory so ``build_tiny`` itself is under test; loading goes
through the public ``core.zoo.load`` with a path.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import zoo
from core.zoo.families import segmenter
from core.zoo.safety import load_state_dict, save_state_dict


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("segmenter-tiny")
    segmenter.build_tiny(out)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> segmenter.SamSegmenter:
    return zoo.load("segmenter", str(tiny_dir))


@pytest.fixture(scope="module")
def dog(dreambooth: Path) -> Image.Image:
    return Image.open(dreambooth / "images" / "dog" / "00.jpg").convert("RGB")


def _bundle_with(tiny_dir: Path, target: Path, name: str, obj: object) -> Path:
    """A copy of the tiny bundle whose weights are ``obj`` saved as a pickle named ``name``."""
    target.mkdir()
    (target / segmenter.CONFIG_NAME).write_text((tiny_dir / segmenter.CONFIG_NAME).read_text())
    torch.save(obj, target / name)
    return target


def test_two_builds_are_byte_identical(tiny_dir: Path, tmp_path: Path) -> None:
    segmenter.build_tiny(tmp_path)
    first, second = _digests(tiny_dir), _digests(tmp_path)
    assert set(first) == {segmenter.CONFIG_NAME, segmenter.WEIGHTS_NAME}
    assert first == second


def test_config_lists_every_architecture_parameter(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / segmenter.CONFIG_NAME).read_text())
    assert config == segmenter.TINY_CONFIG
    assert set(config) == set(segmenter.VARIANTS["vit_h"])  # the same keys describe every SAM
    model = segmenter.build_sam(config)
    assert model.image_encoder.img_size == config["image_size"] == 128
    assert model.prompt_encoder.image_embedding_size == (8, 8)


def test_vit_h_config_is_the_library_registry_model() -> None:
    """Our builder with the vit_h config makes exactly sam_model_registry['vit_h']'s parameters
    (built on the meta device: shapes only, no memory)."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = segmenter.build_sam(segmenter.VARIANTS["vit_h"]).state_dict()
        theirs = sam_model_registry["vit_h"]().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert sum(v.numel() for v in ours.values()) > 600_000_000


def test_segment_two_boxes_on_photo(tiny: segmenter.SamSegmenter, dog: Image.Image) -> None:
    boxes = np.array([[10, 20, 200, 300], [100.5, 100, 400, 500]], dtype=np.float32)
    masks, scores = tiny.segment(dog, boxes)
    width, height = dog.size
    assert masks.shape == (2, height, width) and masks.dtype == bool
    assert scores.shape == (2,) and scores.dtype == np.float32 and np.isfinite(scores).all()
    # the same pixels as an array give the same answer
    masks_np, scores_np = tiny.segment(np.asarray(dog), boxes.tolist())
    assert np.array_equal(masks, masks_np) and np.allclose(scores, scores_np)


def test_segment_no_boxes_returns_empty_arrays(tiny: segmenter.SamSegmenter) -> None:
    image = np.zeros((50, 70, 3), dtype=np.uint8)
    for boxes in ([], np.zeros((0, 4))):
        masks, scores = tiny.segment(image, boxes)
        assert masks.shape == (0, 50, 70) and masks.dtype == bool
        assert scores.shape == (0,) and scores.dtype == np.float32


def test_segment_rejects_a_non_rgb_array(tiny: segmenter.SamSegmenter) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        tiny.segment(np.zeros((50, 70), dtype=np.uint8), [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        tiny.segment(np.zeros((50, 70, 3), dtype=np.float32), [[0, 0, 10, 10]])


def test_plain_tensor_pth_checkpoint_loads(tiny_dir: Path, tmp_path: Path, dog: Image.Image) -> None:
    """Meta's checkpoints are a bare state dict in a .pth: that path works and gives the same model."""
    state = load_state_dict(tiny_dir / segmenter.WEIGHTS_NAME)
    bundle = _bundle_with(tiny_dir, tmp_path / "pth", "sam_tiny.pth", state)
    from_pth = zoo.load("segmenter", str(bundle))
    from_safetensors = zoo.load("segmenter", str(tiny_dir))
    box = [[30, 40, 300, 400]]
    assert np.array_equal(from_pth.segment(dog, box)[0], from_safetensors.segment(dog, box)[0])


def test_checkpoint_with_a_missing_key_is_rejected(tiny_dir: Path, tmp_path: Path) -> None:
    state = load_state_dict(tiny_dir / segmenter.WEIGHTS_NAME)
    del state["mask_decoder.iou_token.weight"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / segmenter.CONFIG_NAME).write_text((tiny_dir / segmenter.CONFIG_NAME).read_text())
    save_state_dict(state, broken / segmenter.WEIGHTS_NAME)
    with pytest.raises(ValueError, match=r"1 missing keys.*mask_decoder\.iou_token\.weight"):
        zoo.load("segmenter", str(broken))


def _mark(path: str) -> None:
    Path(path).write_text("the pickle ran code")


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_mark, (self.marker,))


@pytest.mark.parametrize("payload", ["object", "string"])
def test_pickle_with_a_non_tensor_is_refused(tiny_dir: Path, tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "marker"
    state: dict = dict(load_state_dict(tiny_dir / segmenter.WEIGHTS_NAME))
    state["extra"] = _RunsCodeWhenUnpickled(marker) if payload == "object" else "not a tensor"
    bundle = _bundle_with(tiny_dir, tmp_path / "pickled", "sam_vit_h_4b8939.pth", state)
    with pytest.raises(zoo.UnsafeWeightsError):
        zoo.load("segmenter", str(bundle))
    assert not marker.exists()


def test_production_ref_offline_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(zoo.ModelNotFoundError, match="HF_HUB_OFFLINE"):
        zoo.load("segmenter", segmenter.PRODUCTION)
    assert time.perf_counter() - start < 30
