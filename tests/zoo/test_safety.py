"""A checkpoint folder where some component exists only as a pickle is refused by name, before any
library looks at it (not with the library's "no file named ….safetensors")."""

from __future__ import annotations

import shutil

import pytest
import torch

from core import zoo


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_component_among_safetensors_is_named_and_refused(zoo_home, tmp_path):
    copy = tmp_path / "sd"
    shutil.copytree(zoo_home / "zoo" / "tiny" / "sd", copy)
    for f in (copy / "unet").glob("*.safetensors"):
        f.unlink()
    marker = tmp_path / "ran"
    torch.save({"conv_in.weight": _RunsCode(marker)}, copy / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(zoo.UnsafeWeightsError) as info:
        zoo.load("sd", str(copy))
    message = str(info.value)
    assert "unet/diffusion_pytorch_model.bin" in message and "pickle" in message and "refused" in message
    assert "text_encoder" not in message  # the components that have safetensors are not blamed
    assert "\n" not in message and not marker.exists()


def test_a_pickle_next_to_its_safetensors_is_ignored(zoo_home, tmp_path):
    copy = tmp_path / "sd"
    shutil.copytree(zoo_home / "zoo" / "tiny" / "sd", copy)
    marker = tmp_path / "ran"
    torch.save({"conv_in.weight": _RunsCode(marker)}, copy / "unet" / "diffusion_pytorch_model.bin")
    pipe = zoo.load("sd", str(copy))  # diffusers reads the safetensors (use_safetensors=True)
    assert pipe.unet is not None and not marker.exists()
