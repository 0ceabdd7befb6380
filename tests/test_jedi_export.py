"""A JeDi export opens in plain diffusers, without s3jedi, and draws exactly what the project draws.

The custom pipeline is loaded in a separate interpreter whose path holds the installed libraries and
none of the project's packages, as on a machine that only downloaded the folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from core import zoo
from core.config import load_config
from core.jedi_export import PIPELINE_FILE, custom_pipeline_source, write_export_files
from core.pipeline_source import BundleError, bundle, module_names

PROMPTS = ["a photo of the subject on the beach", "a photo of the subject in the snow"]
PLAIN_DIFFUSERS = textwrap.dedent(
    """
    import importlib.util, sys
    sys.path.append(sys.argv[1])  # the installed libraries, and nothing of the project
    assert [p for p in ("core", "training", "cluster") if importlib.util.find_spec(p)] == [], sys.path
    import numpy as np, torch
    from diffusers import DiffusionPipeline
    from PIL import Image
    export, out, *refs = sys.argv[2:]
    pipe = DiffusionPipeline.from_pretrained(export, custom_pipeline=export, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        [Image.open(r) for r in refs], {prompts!r}, num_inference_steps=3,
        image_guidance_scale=1.5, generator=torch.Generator().manual_seed(7), output_type="np",
    ).images
    np.save(out, images)
    print(type(pipe).__module__, type(pipe).__name__)
    """
).format(prompts=PROMPTS)


@pytest.fixture(scope="module")
def export(zoo_home, tmp_path_factory) -> Path:
    """A tiny JeDi pipeline with random coupling weights (so references change the image), saved the
    way training exports it."""
    pipe = zoo.load("jedi", "tiny", home=zoo_home)
    torch.manual_seed(3)
    with torch.no_grad():
        pipe.unet.conv_in.weight.normal_(0, 0.05)
    out = tmp_path_factory.mktemp("export")
    pipe.save_pretrained(str(out), safe_serialization=True)
    write_export_files(out, load_config("tiny"), step=5, ema=False)
    return out


def test_plain_diffusers_loads_the_export_and_draws_what_the_project_draws(export, tmp_path):
    from core.jedi import JeDiPipeline

    refs = []
    for i, colour in enumerate(("red", "blue")):
        refs.append(tmp_path / f"ref-{i}.png")
        Image.new("RGB", (48, 40), colour).save(refs[-1])
    pipe = JeDiPipeline.from_pretrained(str(export))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        [Image.open(r) for r in refs],
        PROMPTS,
        num_inference_steps=3,
        image_guidance_scale=1.5,  # the default guidance: the paper's Eq. 3, one scale
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HOME"] = str(tmp_path / "hf")  # diffusers copies pipeline.py into its modules cache
    site_packages = sysconfig.get_paths()["purelib"]
    argv = [sys.executable, "-S", "-c", PLAIN_DIFFUSERS, site_packages, str(export), str(tmp_path / "out.npy")]
    proc = subprocess.run([*argv, *map(str, refs)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "JeDiPipeline" and not proc.stdout.startswith("core")
    got = np.load(tmp_path / "out.npy")
    assert got.shape == expected.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(expected[0] - expected[1]).max() > 0  # two prompts, two different images


def test_the_export_files_are_generated_from_the_project_code(export):
    text = (export / PIPELINE_FILE).read_text()
    assert text == custom_pipeline_source()
    for name in module_names("core.jedi.pipeline"):
        assert name.replace(".", "/") + ".py" in text  # named as a source in the header
    assert "from core" not in text and "import core" not in text
    assert json.loads((export / "model_index.json").read_text())["_class_name"] == "JeDiPipeline"


def test_the_model_card_names_a_base_model_diffusers_can_load(export, zoo_home):
    text = (export / "README.md").read_text()
    _, front, body = text.split("---", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "diffusers" and "jedi" in meta["tags"]
    assert meta["base_model"] == str(zoo_home / "zoo" / "tiny" / "sd") and Path(meta["base_model"]).is_dir()
    assert "custom_pipeline=folder" in body and "| steps | `5` |" in body
    assert "its images are noise" in body  # the tiny profile says so


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


@pytest.fixture
def package(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_package(tmp_path, {"bpkg/__init__.py": "", "bpkg/low.py": "import math\n\nTAU = 2 * math.pi\n"})
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("bpkg")]:
        del sys.modules[name]


def test_bundle_orders_dependencies_first_and_keeps_aliases(package):
    write_package(
        package,
        {
            "bpkg/top.py": '''
                """Top."""
                from __future__ import annotations

                import math

                from bpkg.low import TAU as FULL_TURN


                def quarter() -> float:
                    return FULL_TURN / 4 + math.pi * 0
            ''',
        },
    )
    source = bundle("bpkg.top", "header", packages=("bpkg",))
    assert module_names("bpkg.top", packages=("bpkg",)) == ["bpkg.low", "bpkg.top"]
    assert source.count("import math") == 1 and "bpkg" not in source.split('"""', 2)[2].replace("# bpkg", "")
    namespace: dict = {}
    exec(compile(source, "bundle", "exec"), namespace)
    assert namespace["quarter"]() == pytest.approx(np.pi / 2)


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ("def f():\n    from bpkg.low import TAU\n    return TAU\n", "inside a function"),
        ("import bpkg.low\n", "use `from ... import name`"),
        ("from bpkg.low import TAU\n\nTAU = 1\n", "TAU is defined by both bpkg.low and bpkg.top"),
    ],
)
def test_bundle_refuses_what_it_cannot_copy_faithfully(package, top, message):
    write_package(package, {"bpkg/top.py": top})
    with pytest.raises(BundleError, match=message):
        bundle("bpkg.top", "header", packages=("bpkg",))
