"""The ``detector`` family (Grounding DINO) and the transformers-5 shim it needs.

The tiny model is built into a temporary directory (not the shared test home), so these tests
exercise ``build_tiny`` itself; loading goes through the public ``core.zoo.load`` with a path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from core import zoo
from core.zoo import gdino_compat
from core.zoo.families import detector
from core.zoo.safety import load_state_dict, save_state_dict

MIN32 = torch.finfo(torch.float32).min


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detector-tiny")
    detector.build_tiny(out)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> detector.GroundingDetector:
    return zoo.load("detector", str(tiny_dir))


@pytest.fixture(scope="module")
def dog(dreambooth: Path) -> Image.Image:
    return Image.open(dreambooth / "images" / "dog" / "00.jpg").convert("RGB")


def _copy_without_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / detector.WEIGHTS_NAME).unlink()  # the text encoder's own weights stay
    return dst


# ---------------------------------------------------------------------------------------------
# gdino_compat: the three BertModel helpers transformers 5 removed, against hand computations


@pytest.fixture(scope="module")
def bert() -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    gdino_compat.install()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    return BertModel(config).eval()


def test_compat_install_is_idempotent(bert: torch.nn.Module) -> None:
    from transformers import BertModel

    assert gdino_compat.install() == []  # the fixture already installed them
    for name in ("get_extended_attention_mask", "invert_attention_mask", "get_head_mask"):
        assert callable(getattr(BertModel, name))


def test_compat_extended_mask_3d_is_additive_per_head(bert: torch.nn.Module) -> None:
    mask = torch.tensor([[[1, 0], [1, 1]]])  # Grounding DINO's per-phrase [batch, from, to] mask
    expected = torch.tensor([[[[0.0, MIN32], [0.0, 0.0]]]])
    got = bert.get_extended_attention_mask(mask, (1, 2), torch.device("cpu"))
    assert got.dtype == torch.float32 and got.shape == (1, 1, 2, 2)
    assert torch.equal(got, expected)


def test_compat_extended_mask_2d_encoder_and_decoder(bert: torch.nn.Module) -> None:
    pad = torch.tensor([[1, 1, 0]])
    got = bert.get_extended_attention_mask(pad, (1, 3))
    assert torch.equal(got, torch.tensor([[[[0.0, 0.0, MIN32]]]]))

    half = bert.get_extended_attention_mask(pad, (1, 3), dtype=torch.float16)
    assert half.dtype == torch.float16 and half[0, 0, 0, 2] == torch.finfo(torch.float16).min

    bert.config.is_decoder = True
    try:
        causal = bert.get_extended_attention_mask(pad, (1, 3))
        # causal [[1,0,0],[1,1,0],[1,1,1]] times padding [1,1,0]
        allowed = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 0]])
        assert torch.equal(causal, ((1.0 - allowed) * MIN32)[None, None])
        # one cached past position: a prefix column of ones in front of the causal part
        past = bert.get_extended_attention_mask(torch.ones(1, 3, dtype=torch.long), (1, 2))
        allowed = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
        assert torch.equal(past, ((1.0 - allowed) * MIN32)[None, None])
    finally:
        bert.config.is_decoder = False

    with pytest.raises(ValueError, match="Wrong shape"):
        bert.get_extended_attention_mask(torch.ones(1, 1, 1, 2), (1, 2))


def test_compat_invert_attention_mask(bert: torch.nn.Module) -> None:
    assert torch.equal(bert.invert_attention_mask(torch.tensor([[0, 1]])), torch.tensor([[[[MIN32, 0.0]]]]))
    got = bert.invert_attention_mask(torch.tensor([[[1, 0], [0, 1]]]))
    assert torch.equal(got, torch.tensor([[[[0.0, MIN32], [MIN32, 0.0]]]]))


def test_compat_head_mask(bert: torch.nn.Module) -> None:
    assert bert.get_head_mask(None, 3) == [None, None, None]
    per_head = bert.get_head_mask(torch.tensor([1, 0]), 3)
    assert per_head.shape == (3, 1, 2, 1, 1) and per_head.dtype == torch.float32
    assert per_head[:, 0, :, 0, 0].tolist() == [[1.0, 0.0]] * 3
    per_layer = bert.get_head_mask(torch.tensor([[1.0, 0], [0, 1], [1, 1]]), 3)
    assert per_layer.shape == (3, 1, 2, 1, 1)
    assert per_layer[:, 0, :, 0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    assert bert.get_head_mask(torch.tensor([1, 0]), 3, is_attention_chunked=True).shape == (3, 1, 2, 1, 1, 1)


def test_compat_warper_matches_transformers_forward(bert: torch.nn.Module) -> None:
    """groundingdino's BertModelWarper (building masks with the shim) agrees with transformers 5's own
    BertModel.forward for a padded batch."""
    from groundingdino.models.GroundingDINO.bertwarper import BertModelWarper

    ids = torch.tensor([[2, 5, 7, 3, 0], [2, 9, 3, 0, 0]])
    pad = (ids != 0).long()
    with torch.no_grad():
        ours = BertModelWarper(bert)(input_ids=ids, attention_mask=pad)["last_hidden_state"]
        native = bert(input_ids=ids, attention_mask=pad).last_hidden_state
    valid = pad.bool()
    assert torch.allclose(ours[valid], native[valid], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the tiny model


def test_two_builds_are_byte_identical(tiny_dir: Path, tmp_path: Path) -> None:
    detector.build_tiny(tmp_path)
    first, second = _digests(tiny_dir), _digests(tmp_path)
    assert {"detector_config.json", "model.safetensors", "text_encoder/vocab.txt"} <= set(first)
    assert first == second


def test_config_records_architecture_and_input_size(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / detector.CONFIG_NAME).read_text())
    assert config["input"]["short_side"] == detector.TINY_INPUT["short_side"]
    assert config["input"]["max_size"] == detector.TINY_INPUT["max_size"]
    assert config["model"]["hidden_dim"] == 256
    assert config["swin"]["embed_dim"] == detector.TINY_SWIN["embed_dim"]
    vocab = (tiny_dir / "text_encoder" / "vocab.txt").read_text().split("\n")
    assert {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ",", "dog", "##s"} <= set(vocab)


def test_production_config_is_the_packages_swin_t_ogc() -> None:
    model = detector.production_config()["model"]
    assert model["backbone"] == "swin_T_224_1k"
    assert model["text_encoder_type"] == "bert-base-uncased"
    assert (model["hidden_dim"], model["enc_layers"], model["dec_layers"], model["num_queries"]) == (256, 6, 6, 900)


def test_production_architecture_matches_library_builder(tiny_dir: Path) -> None:
    """build_model(production config) gives the same parameter names and shapes as groundingdino's
    own build_groundingdino with the same settings (tiny BERT standing in for bert-base-uncased)."""
    from types import SimpleNamespace

    from groundingdino.models.GroundingDINO.groundingdino import build_groundingdino

    config = detector.production_config()
    text_encoder = str(tiny_dir / "text_encoder")
    ours = detector.build_model(config, text_encoder).state_dict()
    args = SimpleNamespace(**{**config["model"], "text_encoder_type": text_encoder})
    theirs = build_groundingdino(args).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_detect_on_photo_returns_boxes_inside_the_image(tiny: detector.GroundingDetector, dog: Image.Image) -> None:
    detections = tiny.detect(dog, "a dog", box_threshold=0.0, text_threshold=0.0)
    assert detections, "with zero thresholds every query is a detection"
    assert len(detections) <= tiny.model.num_queries
    width, height = dog.size
    for d in detections:
        assert isinstance(d, detector.Detection)
        x0, y0, x1, y1 = d.box_xyxy
        assert all(isinstance(v, float) for v in d.box_xyxy)
        assert 0.0 <= x0 <= x1 <= width and 0.0 <= y0 <= y1 <= height
        assert 0.0 <= d.score <= 1.0
        assert d.phrase == "a dog"  # every caption word passes text_threshold 0, special tokens never
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        detections[0].score = 1.0  # type: ignore[misc]
    assert tiny.detect(dog, "a dog", box_threshold=1.0, text_threshold=0.0) == []


def test_detect_batch_equals_single_calls(tiny: detector.GroundingDetector, dog: Image.Image) -> None:
    other = dog.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    batch = tiny.detect_batch([dog, other], ["a dog", "red backpack . cat"], 0.0, 0.0)
    assert len(batch) == 2
    single = tiny.detect(dog, "a dog", 0.0, 0.0)
    assert len(batch[0]) == len(single)
    for b, s in zip(batch[0], single, strict=True):
        assert b.phrase == s.phrase
        assert b.box_xyxy == pytest.approx(s.box_xyxy, abs=1e-2)
        assert b.score == pytest.approx(s.score, rel=1e-3, abs=1e-9)
    assert batch[1] and {d.phrase for d in batch[1]} == {"red backpack cat"}

    small = dog.resize((200, 120))  # a differently sized image is padded in the batch
    mixed = tiny.detect_batch([dog, small], ["dog", "dog"], 0.0, 0.0)
    for d in mixed[1]:
        x0, y0, x1, y1 = d.box_xyxy
        assert 0.0 <= x0 <= x1 <= 200 and 0.0 <= y0 <= y1 <= 120
    assert tiny.detect_batch([], [], 0.0, 0.0) == []
    with pytest.raises(ValueError, match="captions"):
        tiny.detect_batch([dog], [], 0.0, 0.0)


def test_checkpoint_with_a_missing_key_is_rejected(tiny_dir: Path, tmp_path: Path) -> None:
    broken = _copy_without_weights(tiny_dir, tmp_path / "broken")
    state = load_state_dict(tiny_dir / detector.WEIGHTS_NAME)
    del state["feat_map.weight"]
    save_state_dict(state, broken / detector.WEIGHTS_NAME)
    with pytest.raises(ValueError, match=r"1 missing keys.*feat_map\.weight"):
        zoo.load("detector", str(broken))


def test_only_the_known_training_keys_are_tolerated(tiny_dir: Path, tmp_path: Path) -> None:
    """Released checkpoints carry label_enc.weight and bert.embeddings.position_ids and may be saved
    from DataParallel ('module.' prefix); those load, any other extra key does not."""
    state = load_state_dict(tiny_dir / detector.WEIGHTS_NAME)
    released = {f"module.{k}": v for k, v in state.items()}
    released["label_enc.weight"] = torch.zeros(2001, 256)
    released["bert.embeddings.position_ids"] = torch.arange(256)[None]
    ok = _copy_without_weights(tiny_dir, tmp_path / "released")
    torch.save({"model": released}, ok / "groundingdino_swint_ogc.pth")
    assert isinstance(zoo.load("detector", str(ok)), detector.GroundingDetector)

    released["extra_head.weight"] = torch.zeros(1)
    bad = _copy_without_weights(tiny_dir, tmp_path / "extra")
    torch.save({"model": released}, bad / "groundingdino_swint_ogc.pth")
    with pytest.raises(ValueError, match=r"1 unexpected keys.*extra_head\.weight"):
        zoo.load("detector", str(bad))


def _mark(path: str) -> None:
    Path(path).write_text("the pickle ran code")


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_mark, (self.marker,))


@pytest.mark.parametrize("payload", ["object", "int"])
def test_pickle_with_a_non_tensor_is_refused(tiny_dir: Path, tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "marker"
    state: dict = dict(load_state_dict(tiny_dir / detector.WEIGHTS_NAME))
    state["evil"] = _RunsCodeWhenUnpickled(marker) if payload == "object" else 3
    target = _copy_without_weights(tiny_dir, tmp_path / "pickled")
    torch.save({"model": state}, target / "groundingdino_swint_ogc.pth")
    with pytest.raises(zoo.UnsafeWeightsError):
        zoo.load("detector", str(target))
    assert not marker.exists()


def test_production_ref_offline_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(zoo.ModelNotFoundError, match="HF_HUB_OFFLINE"):
        zoo.load("detector", detector.PRODUCTION)
    assert time.perf_counter() - start < 30
