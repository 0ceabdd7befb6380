"""The zoo build itself: idempotent, checksummed, atomic, and loud when something is missing."""

from __future__ import annotations

import json

import pytest

from core import zoo
from core.zoo.build import MANIFEST, checksums, is_built


def test_build_is_deterministic_idempotent_and_repairs_damage(tmp_path):
    first = zoo.build("tiny", ["sd"], home=tmp_path / "a")
    second = zoo.build("tiny", ["sd"], home=tmp_path / "b")
    root_a, root_b = first[0].path, second[0].path
    assert first[0].status == "built"
    assert checksums(root_a) == checksums(root_b), "two builds must write byte-identical files"
    assert zoo.build("tiny", ["sd"], home=tmp_path / "a")[0].status == "up to date"

    manifest = json.loads((root_a.parent / MANIFEST).read_text())
    assert manifest["families"]["sd"]["files"] == checksums(root_a)

    weights = next(root_a.rglob("unet/*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])  # a truncated file, as after a killed copy
    assert not is_built("sd", root_a.parent)
    assert zoo.build("tiny", ["sd"], home=tmp_path / "a")[0].status == "built"
    assert checksums(root_a) == checksums(root_b)


def test_missing_model_says_which_build_to_run(tmp_path):
    with pytest.raises(zoo.ModelNotFoundError, match=r"run `s3jedi zoo build --profile tiny`"):
        zoo.load("sd", "tiny", home=tmp_path)


def test_missing_path_and_unknown_family_are_clear(tmp_path):
    with pytest.raises(zoo.ModelNotFoundError, match="models.sd: no such directory"):
        zoo.load("sd", str(tmp_path / "nowhere"))
    with pytest.raises(KeyError, match="unknown model family 'sdx'"):
        zoo.load("sdx", "tiny")
    with pytest.raises(ValueError, match="profile: cannot build 'sd14'"):
        zoo.build("sd14", home=tmp_path)


def test_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(zoo.ModelNotFoundError, match="not in the local Hugging Face cache"):
        zoo.load("sd", "CompVis/stable-diffusion-v1-4")


def test_every_family_is_registered_with_a_production_reference():
    fams = zoo.all_families()
    assert set(fams) >= {"sd", "sdxl", "inpaint", "pix2pix", "clip", "dino", "detector", "segmenter", "llm"}
    for fam in fams.values():
        assert fam.production and fam.library and fam.summary
