"""The ``negclip`` family: its tiny stand-in, and the released checkpoint's format loaded safely."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import zoo
from core.zoo.families import clip as clip_family
from core.zoo.families import negclip
from core.zoo.safety import load_state_dict


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("negclip")
    zoo.get("negclip").build_tiny(out)
    return out


@pytest.fixture(scope="module")
def photo(dreambooth) -> Image.Image:
    return Image.open(dreambooth / "images" / "dog" / "00.jpg").convert("RGB")


def trainer_checkpoint(state: dict[str, torch.Tensor], legacy: bool = False) -> bytes:
    """The layout of the released negclip.pth: open_clip's trainer saves the DDP-wrapped model's state
    dict beside the epoch, the run name and the optimizer, whose learning rate is a numpy scalar."""
    buffer = io.BytesIO()
    checkpoint = {
        "epoch": 5,
        "name": "negclip",
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": np.float64(1e-6), "params": [0, 1], "eps": 1e-6}]},
    }
    torch.save(checkpoint, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def test_two_builds_are_identical_and_not_the_tiny_clip(tiny_dir, tmp_path):
    def digests(root: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}

    for name in ("again", "clip"):
        (tmp_path / name).mkdir()
    zoo.get("negclip").build_tiny(tmp_path / "again")
    assert digests(tmp_path / "again") == digests(tiny_dir)
    clip_family.build_tiny(tmp_path / "clip")
    assert digests(tmp_path / "clip")["open_clip_model.safetensors"] != digests(tiny_dir)["open_clip_model.safetensors"]


def test_the_tiny_stand_in_loads_as_a_clip_scorer(tiny_dir, photo):
    scorer = zoo.load("negclip", str(tiny_dir))
    assert isinstance(scorer, clip_family.ClipScorer) and not scorer.model.training
    image, text = scorer.encode_images([photo]), scorer.encode_texts(["a dog on the beach"])
    assert image.shape == text.shape == (1, 32)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(1), atol=1e-5, rtol=0)
    assert scorer.tokenizer(["a dog"])[0, 0].item() == 49406, "the real CLIP tokenizer"


@pytest.mark.parametrize("legacy", [False, True])
def test_the_trainer_checkpoint_loads_with_weights_only_and_gives_the_same_model(tiny_dir, tmp_path, photo, legacy):
    reference = zoo.load("negclip", str(tiny_dir))
    state = load_state_dict(tiny_dir / clip_family.WEIGHTS_NAME)
    raw = trainer_checkpoint(state, legacy)
    if legacy:  # written by numpy 1, as the released file was: the scalar's constructor has its old name
        raw = raw.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
        assert b"numpy.core.multiarray\nscalar" in raw
    converted = tmp_path / "converted"
    converted.mkdir()
    shutil.copy(tiny_dir / clip_family.CONFIG_NAME, converted)
    (converted / "negclip.pth").write_bytes(raw)
    with pytest.raises(zoo.UnsafeWeightsError, match="refused to load"):
        load_state_dict(converted / "negclip.pth")  # numpy scalars are allowed only when asked for
    loaded = zoo.load("negclip", str(converted))
    torch.testing.assert_close(loaded.encode_images([photo]), reference.encode_images([photo]))
    torch.testing.assert_close(loaded.encode_texts(["a dog"]), reference.encode_texts(["a dog"]))


def test_code_in_the_checkpoint_is_refused_before_it_runs(tiny_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    shutil.copy(tiny_dir / clip_family.CONFIG_NAME, tmp_path)
    torch.save({"state_dict": {"visual.proj": Payload()}, "lr": np.float64(1.0)}, tmp_path / "negclip.pth")
    with pytest.raises(zoo.UnsafeWeightsError, match="refused to load"):
        zoo.load("negclip", str(tmp_path))
    assert not marker.exists()


def test_a_file_reference_is_the_vit_b_32_architecture(tiny_dir, tmp_path):
    """The released file alone: NegCLIP's architecture is built; tiny weights do not fit it, and the
    error says which keys differ instead of leaving parameters at random."""
    weights = tmp_path / "negclip.pth"
    weights.write_bytes(trainer_checkpoint(load_state_dict(tiny_dir / clip_family.WEIGHTS_NAME)))
    with pytest.raises(ValueError, match=r"negclip .*negclip.pth: checkpoint does not match the architecture"):
        zoo.load("negclip", str(weights))
    assert negclip._architecture(weights) == ("ViT-B-32-quickgelu", weights)


def test_unusable_directories_are_named(tiny_dir, tmp_path):
    with pytest.raises(zoo.ModelNotFoundError, match="has no open_clip_config.json"):
        zoo.load("negclip", str(tmp_path))
    shutil.copy(tiny_dir / clip_family.CONFIG_NAME, tmp_path)
    for name in ("a.pth", "b.pt"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(zoo.ModelNotFoundError, match=r"exactly one weights file .*\['a.pth', 'b.pt'\]"):
        zoo.load("negclip", str(tmp_path))
    assert zoo.get("negclip").production == negclip.PRODUCTION
    with pytest.raises(zoo.ModelNotFoundError, match="models.negclip: no such directory or file"):
        zoo.load("negclip", str(tmp_path / "negclip.pth"))


@pytest.mark.slow
def test_a_released_size_checkpoint_loads_into_vit_b_32(tmp_path, photo):
    """A checkpoint of NegCLIP's full size in the trainer's layout (random weights) loads from the file."""
    model = zoo.load("negclip", "shape").model
    (tmp_path / "negclip.pth").write_bytes(trainer_checkpoint(model.state_dict()))
    scorer = zoo.load("negclip", str(tmp_path / "negclip.pth"))
    assert scorer.embed_dim == 512 and scorer.encode_images([photo]).shape == (1, 512)
    torch.testing.assert_close(scorer.model.visual.proj, model.visual.proj)
