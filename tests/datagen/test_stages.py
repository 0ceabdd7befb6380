"""The image stages' hearts without Ray: tiny models on CPU, and geometry where the answer is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from core.grounded_segmentation import Instance
from core.s3 import decode_image, decode_mask, encode_image, encode_mask
from datagen import backgrounds, collages, consistency, instances, stylize
from datagen.imaging import output_problem
from datagen.rows import Item, RejectRow, WorkRow, apply_stage, from_table, to_table
from datagen.seeds import derive_seed, rng
from tests.datagen.conftest import tiny_config

CFG = tiny_config()


def _row(**kw) -> WorkRow:
    base = dict(
        subject_id="mug-000", shard=0, category="mug", subject="a red ceramic mug", scenes=["on a desk", "in a car"]
    )
    return WorkRow(**{**base, "seed": derive_seed(0, "mug-000"), **kw})


@pytest.fixture(scope="module")
def maker(zoo_home) -> collages.CollageMaker:
    return collages.load(CFG, "cpu")


@pytest.fixture(scope="module")
def cutter(zoo_home) -> instances.InstanceCutter:
    return instances.load(CFG, "cpu")


@pytest.fixture(scope="module")
def clip_filter(zoo_home) -> consistency.ConsistencyFilter:
    return consistency.load(CFG, "cpu")


@pytest.fixture(scope="module")
def collage_row(maker) -> WorkRow:
    return maker(_row())


def test_collages_are_seeded_per_subject_and_sized(maker, collage_row):
    cfg = CFG.datagen.collages
    assert len(collage_row.items) == cfg.images_per_subject
    assert all(decode_image(i.image).size == (cfg.size, cfg.size) for i in collage_row.items)
    assert collage_row.collage_prompt == cfg.prompt_template.format(subject="a red ceramic mug")
    again = maker(_row())
    assert [i.image for i in again.items] == [i.image for i in collage_row.items], "same seed, same pixels"
    other = maker(_row(seed=derive_seed(0, "mug-001")))
    assert other.items[0].image != collage_row.items[0].image


@pytest.mark.parametrize(
    ("box", "fill", "kept", "reason"),
    [
        ((10, 10, 20, 20), 1.0, [], None),
        ((10, 10, 12, 12), 1.0, [], "too-small"),
        ((5, 5, 60, 60), 1.0, [], "too-large"),
        ((0, 10, 20, 30), 1.0, [], "cut-by-border"),
        ((40, 40, 64, 60), 1.0, [], "cut-by-border"),
        ((10, 10, 20, 20), 1.0, [(11, 11, 21, 21)], "overlaps"),
        ((10, 10, 20, 20), 1.0, [(30, 30, 40, 40)], None),
        ((10, 10, 20, 20), 0.05, [], "empty-mask"),
    ],
)
def test_instance_checks(box, fill, kept, reason):
    h, w = box[3] - box[1], box[2] - box[0]
    mask = np.zeros((h, w), bool)
    mask.flat[: round(fill * h * w)] = True
    problem = instances.check_instance(box, mask, 64, 64, kept, CFG.datagen.instances)
    assert (problem[0] if problem else None) == reason
    if problem:
        assert problem[1]


def test_instance_selection_keeps_the_best_up_to_the_limit():
    full = np.ones((64, 64), bool)
    found = [Instance((10.2, 10.7, 20.0, 20.5), 0.9, "mug", full, 0.5) for _ in range(2)]
    found += [
        Instance((30.0, 30.0, 40.0, 40.0), 0.8, "mug", full, 0.5),
        Instance((45.0, 5.0, 55.0, 15.0), 0.7, "mug", full, 0.5),
    ]
    cfg = CFG.datagen.instances.model_copy(update={"max_per_image": 2})
    kept, rejects = instances.select_instances(found, Image.new("RGB", (64, 64)), "collage 0", cfg)
    assert [(k[0], k[3]) for k in kept] == [((10, 10, 20, 21), 0), ((30, 30, 40, 40), 2)]
    assert kept[0][1].shape == (11, 10) and kept[0][1].all(), "the mask is cut to its box"
    assert [(r.reason, r.item) for r in rejects] == [("overlaps", "collage 0 box 1")]


def test_instance_cutter_crops_with_masks_and_rejects_corrupt_collages(cutter, collage_row):
    corrupt = Item(b"\x89PNG\r\n not an image", None, "p", 1, "collage 9")
    out = cutter(dataclasses.replace(collage_row, items=[*collage_row.items, corrupt]))
    assert out.items and all(i.source.startswith("collage ") and " box " in i.source for i in out.items)
    for item in out.items:
        image, mask = decode_image(item.image), decode_mask(item.mask)
        assert mask.shape == (image.height, image.width) and mask.any()
    reasons = {r.reason for r in out.rejects}
    assert "corrupt-image" in reasons and reasons <= {
        "corrupt-image",
        "too-small",
        "too-large",
        "cut-by-border",
        "overlaps",
        "empty-mask",
    }
    strict = instances.InstanceCutter(
        cutter.detector, cutter.segmenter, CFG.datagen.instances.model_copy(update={"box_threshold": 1.0})
    )
    with pytest.raises(RejectRow, match="no-instances"):
        strict(collage_row)


def test_consistent_group_selection_on_known_similarities():
    sim = torch.tensor(
        [
            [1.0, 0.97, 0.96, 0.50],
            [0.97, 1.0, 0.94, 0.60],
            [0.96, 0.94, 1.0, 0.55],
            [0.50, 0.60, 0.55, 1.0],
        ]
    )
    assert consistency.select_consistent(sim, 0.95, 2, 4) == [0, 1]  # 2 joins only if every pair >= 0.95
    assert consistency.select_consistent(sim, 0.93, 2, 4) == [0, 1, 2]
    assert consistency.select_consistent(sim, 0.93, 2, 2) == [0, 1]
    assert consistency.select_consistent(sim, 0.93, 4, 4) is None
    assert consistency.select_consistent(sim, 0.98, 2, 4) is None
    assert consistency.select_consistent(sim[:1, :1], 0.0, 2, 4) is None


def test_consistency_filter_keeps_a_group_or_rejects_with_the_best_pair(cutter, clip_filter, collage_row):
    cut = cutter(collage_row)
    filt = clip_filter
    kept = filt(cut)
    assert 2 <= len(kept.items) <= CFG.datagen.consistency.max_set_size and kept.consistency >= 0.95
    strict = consistency.ConsistencyFilter(filt.clip, CFG.datagen.consistency.model_copy(update={"threshold": 1.0}))
    with pytest.raises(RejectRow, match=r"inconsistent: no 2 of \d+ instances agree: best pair 0\.\d+, threshold 1.0"):
        strict(cut)


def test_compose_places_the_subject_where_drawn():
    crop = Image.new("RGB", (10, 20), (200, 0, 0))
    mask = np.zeros((20, 10), bool)
    mask[5:15, 2:8] = True
    canvas, full = backgrounds.compose(crop, mask, 64, 0.5, (0.0, 1.0), (255, 255, 255))
    ys, xs = np.nonzero(full)
    assert canvas.size == (64, 64) and full.shape == (64, 64)
    assert xs.min() >= 0 and ys.max() == 63 - 8 and xs.max() < 16  # 16x32 placed bottom-left
    pixels = np.asarray(canvas)
    assert (pixels[full] == (200, 0, 0)).all() and (pixels[~full] == 255).all()
    painted = Image.new("RGB", (64, 64), (0, 0, 255))
    final = np.asarray(backgrounds.paste_subject(painted, canvas, full))
    assert (final[full] == (200, 0, 0)).all() and (final[~full] == (0, 0, 255)).all()


def test_backgrounds_keep_the_subject_exact_and_stylize_keeps_masks(cutter, clip_filter, collage_row):
    row = clip_filter(cutter(collage_row))
    painted = backgrounds.load(CFG, "cpu")(row)
    assert len(painted.items) == len(row.items)
    cfg = CFG.datagen.backgrounds
    for i, (src, item) in enumerate(zip(row.items, painted.items, strict=True)):
        image, mask = decode_image(item.image), decode_mask(item.mask)
        assert image.size == (64, 64) and item.prompt == f"a red ceramic mug, {row.scenes[i % 2]}"
        draw = rng(derive_seed(row.seed, "backgrounds", "layout", i))
        scale = float(draw.uniform(cfg.scale_min, cfg.scale_max))
        position = (float(draw.random()), float(draw.random()))
        composite, expected = backgrounds.compose(
            decode_image(src.image), decode_mask(src.mask), 64, scale, position, cfg.canvas_color
        )
        assert np.array_equal(mask, expected) and mask.any()
        assert np.array_equal(np.asarray(image)[mask], np.asarray(composite)[mask]), "subject pixels are untouched"
        assert not np.array_equal(np.asarray(image)[~mask], np.asarray(composite)[~mask]), "the background is painted"
    styler = stylize.load(CFG, "cpu")
    never = stylize.Stylizer(styler.pipe, CFG.datagen.stylize.model_copy(update={"probability": 0.0}))
    assert never(painted) is painted
    always = stylize.Stylizer(styler.pipe, CFG.datagen.stylize.model_copy(update={"probability": 1.0}), min_images=2)
    styled = always(painted)
    style = next(s for s in CFG.datagen.stylize.styles if s.instruction == styled.style)
    assert [i.mask for i in styled.items] == [i.mask for i in painted.items]
    assert [i.prompt for i in styled.items] == [style.caption.format(prompt=i.prompt) for i in painted.items]
    assert all(a.image != b.image for a, b in zip(styled.items, painted.items, strict=True))


def test_apply_stage_turns_failures_into_rejects():
    row = _row(items=[Item(encode_image(Image.new("RGB", (4, 4))), encode_mask(np.ones((4, 4), bool)), "p", 1, "x")])

    def boom(r):
        raise ZeroDivisionError("model exploded")

    def picky(r):
        raise RejectRow("too-few-instances", "1 < 2")

    failed = apply_stage("backgrounds", boom, row)
    assert failed.rejected and failed.items == [] and failed.trace[-1].outcome == "error"
    assert failed.rejects[-1].reason == "error" and "ZeroDivisionError: model exploded" in failed.rejects[-1].details
    assert apply_stage("stylize", boom, failed) is failed, "a rejected row passes through untouched"
    rejected = apply_stage("consistency", picky, row)
    assert (rejected.rejects[-1].reason, rejected.trace[-1].outcome) == ("too-few-instances", "rejected")
    passed = apply_stage("stylize", lambda r: r, row)
    assert passed.trace[-1].outcome == "passed" and passed.trace[-1].items_out == 1
    assert from_table(to_table([failed, passed])) == [failed, passed], "rows survive the Arrow round trip"


def test_generated_image_checks():
    assert output_problem(Image.new("RGB", (64, 64), (0, 0, 0)), (64, 64)).startswith(
        "generated image is a single colour"
    )
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8))
    assert output_problem(noise, (64, 64)) == "generated 64x32, expected 64x64"
    assert output_problem(noise, (64, 32)) is None


def test_models_load_once_and_a_load_failure_is_raised_for_every_row():
    from datagen.ray_stages import Lazy, StageLoadError

    calls = []
    ok = Lazy(lambda: calls.append(1) or "model", "the collages models")
    assert ok.get() == ok.get() == "model" and calls == [1]

    def broken():
        calls.append(2)
        raise OSError("no model_index.json")

    bad = Lazy(broken, "the collages models")
    for _ in range(2):
        with pytest.raises(StageLoadError, match="loading the collages models failed: OSError: no model_index.json"):
            bad.get()
    assert calls == [1, 2], "a failed load is not retried for every row"
