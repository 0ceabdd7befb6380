"""Scene folders and the synthetic scene whose true masks are known."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.config.multiconcept import ConceptSection, MultiConceptSection
from training.multiconcept.scene import fill_concepts, load_scene

CFG = MultiConceptSection()


def test_the_synthetic_scene_has_exact_masks(scene_dir):
    scene = load_scene(str(scene_dir), CFG)
    assert scene.name == "duo" and scene.image_names == ["00.png", "01.png"]
    assert scene.tokens == ["<c0>", "<c1>", "<c2>"] and [c.initializer for c in scene.concepts] == [
        "dog",
        "cat",
        "background",
    ]
    assert scene.images.shape == (2, 64, 64, 3) and scene.present.all()
    truth = scene.truth
    assert truth.shape == (2, 3, 64, 64)
    assert (truth.sum(axis=1) == 1).all(), "the three concepts partition every image"
    areas = truth[:, :2].mean(axis=(2, 3))
    assert np.allclose(areas, areas[0, 0], atol=0.01) and 0.08 < areas[0, 0] < 0.15, "two equal ellipses"
    centres = [[np.nonzero(truth[m, k].any(axis=0))[0].mean() for k in range(2)] for m in range(2)]
    assert centres[0][0] < 32 < centres[0][1] and centres[1][1] < 32 < centres[1][0], "the subjects swap halves"


def test_masks_follow_their_image_through_resizing(scene_dir):
    small = load_scene(str(scene_dir), MultiConceptSection(resolution=32))
    full = load_scene(str(scene_dir), CFG)
    assert small.truth.shape == (2, 3, 32, 32)
    assert np.allclose(small.truth.mean(axis=(2, 3)), full.truth.mean(axis=(2, 3)), atol=0.03)


def test_concepts_can_come_from_the_config():
    cfg = MultiConceptSection(concepts=[ConceptSection(token="<a>"), ConceptSection(token="<b>", initializer="grass")])
    assert fill_concepts("{c0} on {c1}, {c0}", ["<a>", "<b>"]) == "<a> on <b>, <a>"
    assert cfg.concepts[0].initializer is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda root: None, None),
        (
            lambda root: (root / "scene.json").write_text(json.dumps({"concepts": [{"token": "<c0>"}]})),
            "multiconcept.concepts: at least 2 concepts",
        ),
        (
            lambda root: (root / "scene.json").write_text(
                json.dumps({"concepts": [{"token": "<a>"}, {"token": "<b>"}], "images": {"00.png": [0, 5]}})
            ),
            r"images.00.png: concept indices must lie in 0..1",
        ),
        (lambda root: (root / "masks" / "01" / "2.png").unlink(), r"masks/01/2.png: missing"),
        (lambda root: shutil.rmtree(root / "masks" / "01"), "ground truth is given for 1 of 2 images"),
    ],
)
def test_bad_scenes_are_refused_with_the_reason(scene_dir, tmp_path, edit, message):
    root = tmp_path / "scene"
    shutil.copytree(scene_dir, root)
    edit(root)
    if message is None:
        assert load_scene(str(root), CFG).truth is not None
        return
    with pytest.raises(ValueError, match=message):
        load_scene(str(root), CFG)


def test_sample_prompts_may_only_name_existing_concepts(scene_dir):
    with pytest.raises(ValueError, match=r"sample_prompts: 'a {c3}' uses \{c3\} but the scene has 3 concepts"):
        load_scene(str(scene_dir), MultiConceptSection(sample_prompts=["a {c3}"]))


def test_a_missing_scene_folder_and_a_bad_resolution_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"--scene: .*/nope is not a directory"):
        load_scene(str(tmp_path / "nope"), CFG)
    with pytest.raises(ValueError, match=r"resolution\n.*must be a multiple of 8 \(the VAE downsamples 8x\)"):
        MultiConceptSection(resolution=60)
