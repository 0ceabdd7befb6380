"""The DreamBooth metric suite on real photos with the tiny backbones: the properties every score
must have whatever the weights (self-similarity 1, symmetry, batch = one by one, masks ignore the
background)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.metrics.foregrounds import MaskSettings
from core.metrics.suite import MetricSuite

IMAGE_METRICS = ("clip_i", "dino", "clip_i_secondary")
MASKED_METRICS = ("mclip_i", "mdino", "mclip_i_secondary")


@pytest.fixture(scope="module")
def suite(backbones):
    b = backbones
    return MetricSuite(
        b["clip"],
        b["dino"],
        clip_secondary=b["clip"],
        negclip=b["negclip"],
        detector=b["detector"],
        segmenter=b["segmenter"],
        mask_settings=MaskSettings(box_threshold=0.0, text_threshold=0.0),
    )


def ellipse_mask(size: tuple[int, int]) -> np.ndarray:
    """A centred ellipse covering the middle of the photo, where the DreamBooth subjects stand."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    return ((x - w / 2) / (0.33 * w)) ** 2 + ((y - h / 2) / (0.4 * h)) ** 2 <= 1


def pasted(subject: Image.Image, mask: np.ndarray, background: Image.Image) -> Image.Image:
    """The masked part of ``subject`` on ``background`` (resized to the subject's size)."""
    out = np.asarray(background.resize(subject.size)).copy()
    out[mask] = np.asarray(subject)[mask]
    return Image.fromarray(out)


def test_an_image_scores_1_against_itself(suite, photos):
    dog = photos["dog"][0]
    refs = suite.references([dog], "dog")
    assert refs.masks_found == 1
    out = suite.score([dog], ["a dog"], refs)
    for metric in IMAGE_METRICS + MASKED_METRICS:
        assert out[metric][0] == pytest.approx(1.0, abs=1e-5), metric
    assert out["mask_found"][0] and 0 < out["mask_fraction"][0] <= 1


def test_image_scores_are_symmetric(suite, photos):
    a, b = photos["dog"][1], photos["teapot"]
    ab = suite.score([a], ["a dog"], suite.references([b], "dog"))
    ba = suite.score([b], ["a dog"], suite.references([a], "dog"))
    for metric in IMAGE_METRICS + MASKED_METRICS:
        assert ab[metric][0] == pytest.approx(ba[metric][0], abs=1e-6), metric
    assert ab["clip_i"][0] < 0.999, "a dog and a teapot must not look identical even to a random CLIP"


def test_a_batch_scores_exactly_like_its_images_one_by_one(suite, photos):
    images = [photos["dog"][3], photos["dog"][4], photos["teapot"], photos["backpack"]]
    prompts = ["a dog in the snow", "a dog on the beach", "a teapot", "a dog"]
    negatives = [["a dog on the beach"], ["a dog in the snow", "a red dog"], [], ["a dog in the snow"]]
    refs = suite.references(photos["dog"][:3], "dog")
    batch = suite.score(images, prompts, refs, negatives)
    assert set(batch) == set(suite.metric_names)
    for i in range(len(images)):
        one = suite.score([images[i]], [prompts[i]], refs, [negatives[i]])
        for metric, values in batch.items():
            np.testing.assert_allclose(one[metric], values[i : i + 1], atol=1e-5, err_msg=metric)
    assert np.isnan(batch["hard_negative_acc"][2]), "an image without negatives has no hard-negative accuracy"


def test_masked_scores_ignore_the_background_when_the_mask_is_given(suite, photos):
    dog = photos["dog"][0]
    mask = ellipse_mask(dog.size)
    on_teapot, on_backpack = pasted(dog, mask, photos["teapot"]), pasted(dog, mask, photos["backpack"])
    refs = suite.references([on_backpack], "dog", masks=[mask])
    out = suite.score([on_teapot], ["a dog"], refs, masks=[mask])
    for plain, masked in zip(IMAGE_METRICS, MASKED_METRICS, strict=True):
        assert out[masked][0] == pytest.approx(1.0, abs=1e-5), masked
        assert out[masked][0] > out[plain][0] + 1e-3, f"{masked} must beat {plain} when only the background differs"


def test_an_image_without_a_mask_gets_nan_masked_scores(suite, photos):
    dog = photos["dog"][0]
    refs = suite.references([dog], "dog")
    out = suite.score([dog, dog], ["a dog", "a dog"], refs, masks=[ellipse_mask(dog.size), None])
    assert not np.isnan(out["mclip_i"][0]) and np.isnan(out["mclip_i"][1]) and np.isnan(out["mdino"][1])
    assert out["mask_found"].tolist() == [True, False]
    with pytest.raises(ValueError, match="masks: 1 masks for 2 images"):
        suite.score([dog, dog], ["a dog", "a dog"], refs, masks=[None])


def test_without_masks_the_suite_has_no_masked_scores(backbones, photos):
    plain = MetricSuite(backbones["clip"], backbones["dino"])
    out = plain.score(photos["dog"][:2], ["a dog", "a dog"], plain.references(photos["dog"][2:], "dog"))
    assert set(out) == set(plain.metric_names) == {"clip_t", "clip_i", "dino", "hard_negative_acc", "conflict"}
    with pytest.raises(ValueError, match="prompts: 1 prompts for 2 images"):
        plain.score(photos["dog"][:2], ["a dog"], plain.references(photos["dog"][2:], "dog"))


def test_describe_records_backbones_and_preprocessing(suite):
    info = suite.describe()
    assert info["clip"]["library"] == "open_clip" and "Normalize" in info["clip"]["preprocess"]
    assert list(info["dino"]["preprocess"]["image_mean"]) == [0.485, 0.456, 0.406]
    assert info["dino"]["feature"] == "final-layer-normed CLS token"
    assert info["masks"]["box_threshold"] == 0.0 and info["masks"]["fill"] == (255, 255, 255)
    assert "clip_secondary" in info and info["negclip"]["library"] == "open_clip"


def test_negclip_t_is_the_cosine_of_image_and_prompt_under_negclip(suite, backbones, photos):
    """Against open_clip's model called directly: preprocess, encode, cosine (paper 000 §3.2)."""
    images, prompts = [photos["dog"][0], photos["teapot"]], ["a dog in the snow", "a teapot on a table"]
    out = suite.score(images, prompts, suite.references(photos["dog"][1:3], "dog"))
    negclip = backbones["negclip"]
    with torch.no_grad():
        image = negclip.model.encode_image(torch.stack([negclip.preprocess(im) for im in images]))
        text = negclip.model.encode_text(negclip.tokenizer(prompts))
    expected = torch.nn.functional.cosine_similarity(image, text, dim=-1).numpy()
    np.testing.assert_allclose(out["negclip_t"], expected, atol=1e-5)
    assert not np.allclose(out["negclip_t"], out["clip_t"], atol=1e-3), "NegCLIP-T is not CLIP-T"
