"""JeDiPipeline on the tiny model with real DreamBooth photos as references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler
from PIL import Image

from core.jedi import JeDiPipeline, unet_input
from core.jedi.attention import attention_kwargs


@pytest.fixture(scope="module")
def dog_refs(dreambooth):
    return [Image.open(dreambooth / "images" / "dog" / f"0{i}.jpg") for i in range(3)]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_fixed_seed_is_deterministic_and_shapes_are_right(jedi_pipe, dog_refs):
    kw = dict(
        num_images_per_prompt=2, num_inference_steps=3, guidance_scale=3.0, image_guidance_scale=1.5, output_type="np"
    )
    a = jedi_pipe(dog_refs[:2], ["a dog on the beach", "a dog in the snow"], generator=_gen(), **kw)
    b = jedi_pipe(dog_refs[:2], ["a dog on the beach", "a dog in the snow"], generator=_gen(), **kw)
    c = jedi_pipe(dog_refs[:2], ["a dog on the beach", "a dog in the snow"], generator=_gen(1), **kw)
    assert a.images.shape == (4, 64, 64, 3)
    assert a.set_latents.shape == (4, 3, 4, 8, 8)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_reference_slots_end_as_the_clean_reference_latents(jedi_pipe, dog_refs):
    out = jedi_pipe(dog_refs[:2], "a dog", num_inference_steps=3, generator=_gen(), output_type="latent")
    from core.jedi.images import prepare_images

    clean = jedi_pipe.encode_images(prepare_images(dog_refs[:2], 64, 64))
    torch.testing.assert_close(out.set_latents[0, :2], clean, atol=0, rtol=0)
    torch.testing.assert_close(out.images, out.set_latents[:, 2], atol=0, rtol=0)


@pytest.mark.parametrize("scheduler_cls", [EulerDiscreteScheduler, DPMSolverMultistepScheduler])
def test_any_diffusers_scheduler_works(jedi_pipe, dog_refs, scheduler_cls):
    original = jedi_pipe.scheduler
    jedi_pipe.scheduler = scheduler_cls.from_config(original.config)
    try:
        out = jedi_pipe(dog_refs[:1], "a dog", num_inference_steps=3, generator=_gen(), output_type="np")
        assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()
    finally:
        jedi_pipe.scheduler = original


def _guidance_inputs(pipe):
    torch.manual_seed(0)
    num_sets, n = 2, 3
    x = torch.randn(num_sets * n, 4, 8, 8)
    refs = torch.randn(num_sets * n, 4, 8, 8)
    generate = torch.tensor([0.0, 0.0, 1.0] * num_sets)
    text = torch.randn(num_sets * n, 77, 32)
    null = torch.randn(1, 77, 32).expand_as(text)
    return x, torch.tensor(400), refs, generate, text, null, n


def _unet_train_like(pipe):
    """Perturb the zero-initialised reference weights so that the branches really differ."""
    import copy

    p = copy.copy(pipe)
    p.unet = copy.deepcopy(pipe.unet)
    with torch.no_grad():
        p.unet.conv_in.weight[:, 4:].normal_(0, 0.1, generator=_gen(3))
    return p


def test_lambda_one_without_text_guidance_is_the_plain_conditional_prediction(jedi_pipe):
    pipe = _unet_train_like(jedi_pipe)
    x, t, refs, generate, text, null, n = _guidance_inputs(pipe)
    with torch.no_grad():
        plain = pipe.unet(unet_input(x, refs, generate), t, text, cross_attention_kwargs=attention_kwargs(n)).sample
        got = pipe.predict_noise(x, t, refs, generate, text, null, n, guidance_scale=1.0, image_guidance_scale=1.0)
    torch.testing.assert_close(got, plain, atol=1e-6, rtol=0)


def test_guidance_formula_and_batched_equals_unbatched(jedi_pipe):
    pipe = _unet_train_like(jedi_pipe)
    x, t, refs, generate, text, null, n = _guidance_inputs(pipe)
    s, lam = 4.0, 2.5
    with torch.no_grad():
        batched = pipe.predict_noise(x, t, refs, generate, text, null, n, s, lam, batch_guidance=True)
        separate = pipe.predict_noise(x, t, refs, generate, text, null, n, s, lam, batch_guidance=False)
        eps_rt = pipe.unet(unet_input(x, refs, generate), t, text, cross_attention_kwargs=attention_kwargs(n)).sample
        eps_r = pipe.unet(unet_input(x, refs, generate), t, null, cross_attention_kwargs=attention_kwargs(n)).sample
        tg = generate.bool()
        alone = unet_input(x[tg], torch.zeros_like(refs[tg]), torch.ones(int(tg.sum())))
        eps_0 = pipe.unet(alone, t, null[tg], cross_attention_kwargs=attention_kwargs(1)).sample
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)
    expected = eps_0 + lam * (eps_r[tg] - eps_0) + s * (eps_rt[tg] - eps_r[tg])
    torch.testing.assert_close(batched[tg], expected, atol=1e-5, rtol=1e-5)


def test_coupling_off_makes_the_target_blind_to_the_references(jedi_pipe):
    pipe = _unet_train_like(jedi_pipe)
    x, t, refs, generate, text, null, n = _guidance_inputs(pipe)
    other_x = x.clone()
    other_x[generate == 0] = torch.randn_like(other_x[generate == 0])
    other_refs = torch.randn_like(refs)
    tg = generate.bool()
    with torch.no_grad():
        off = [
            pipe.predict_noise(a, t, r, generate, text, null, n, 1.0, 1.0, coupled=False)[tg]
            for a, r in ((x, refs), (other_x, other_refs))
        ]
        on = [
            pipe.predict_noise(a, t, r, generate, text, null, n, 1.0, 1.0, coupled=True)[tg]
            for a, r in ((x, refs), (other_x, other_refs))
        ]
    torch.testing.assert_close(off[0], off[1], atol=1e-6, rtol=0)
    assert not torch.allclose(on[0], on[1], atol=1e-4)


def test_save_and_load_round_trip(jedi_pipe, dog_refs, tmp_path):
    jedi_pipe.save_pretrained(tmp_path / "jedi")
    loaded = JeDiPipeline.from_pretrained(tmp_path / "jedi")
    loaded.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=2, output_type="np")
    np.testing.assert_allclose(
        loaded(dog_refs[:1], "a dog", generator=_gen(), **kw).images,
        jedi_pipe(dog_refs[:1], "a dog", generator=_gen(), **kw).images,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(reference_images=[]), "reference_images: at least 1"),
        (dict(reference_images=None), "reference_images: at least 1"),
        (dict(prompt=[]), "prompt: at least 1"),
        (dict(reference_images=[np.full((8, 8, 3), np.nan, dtype=np.float32)]), r"reference_images\[0\]: contains NaN"),
        (
            dict(reference_images=[np.zeros((8, 8, 3), dtype=np.float32) + np.inf]),
            r"reference_images\[0\]: contains NaN",
        ),
        (dict(reference_images=[np.zeros((5,), dtype=np.uint8)]), r"reference_images\[0\]: expected an H×W×3"),
        (dict(reference_images=[np.zeros((8, 8, 7), dtype=np.uint8)]), r"reference_images\[0\]: expected an H×W×3"),
        (dict(reference_images=[torch.zeros(8, 8)]), r"reference_images\[0\]: expected a \(3, H, W\) tensor"),
        (dict(reference_images=["dog.jpg"]), r"reference_images\[0\]: expected a PIL image"),
        (dict(reference_images=[np.full((8, 8, 3), 2.0)]), r"must lie in \[0, 1\]"),
        (dict(reference_captions=["a", "b"]), "reference_captions: 2 captions for 1"),
        (dict(num_images_per_prompt=0), "num_images_per_prompt: must be >= 1"),
        (dict(guidance_scale=float("nan")), "guidance_scale: must be a finite number"),
        (dict(height=60), "height: must be a positive multiple of 8"),
    ],
)
def test_bad_inputs_name_the_argument(jedi_pipe, dog_refs, kwargs, message):
    call = dict(reference_images=dog_refs[:1], prompt="a dog", num_inference_steps=1)
    call.update(kwargs)
    with pytest.raises(ValueError, match=message):
        jedi_pipe(**call)


def test_more_references_than_the_set_allows(jedi_pipe, dog_refs):
    with pytest.raises(ValueError, match="reference_images: 4 given, this model takes at most 3"):
        jedi_pipe(dog_refs + dog_refs[:1], "a dog", num_inference_steps=1)


def test_reference_inputs_of_every_kind_are_accepted(jedi_pipe, dog_refs):
    arr = np.asarray(dog_refs[0].convert("RGB"))
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    kw = dict(num_inference_steps=1, output_type="latent")
    a = jedi_pipe([dog_refs[0]], "a dog", generator=_gen(), **kw).set_latents
    b = jedi_pipe([arr], "a dog", generator=_gen(), **kw).set_latents
    c = jedi_pipe([tensor], "a dog", generator=_gen(), **kw).set_latents
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-3, rtol=0)


def test_tiny_jedi_family_loads_through_the_zoo_and_generates(zoo_home, dog_refs):
    from core import zoo

    pipe = zoo.load("jedi", "tiny", home=zoo_home)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe, JeDiPipeline) and pipe.max_references == 3
    out = pipe(dog_refs[:2], "a dog on the beach", num_inference_steps=2, generator=_gen())
    assert out.images[0].size == (64, 64)


def test_per_prompt_reference_sets_equal_separate_calls(jedi_pipe, dreambooth, dog_refs):
    """Different subjects in one batched call give what separate calls give (per-set conditioning)."""
    cat_refs = [Image.open(dreambooth / "images" / "cat" / f"0{i}.jpg") for i in range(2)]
    kw = dict(num_inference_steps=2, guidance_scale=2.0, image_guidance_scale=1.5, output_type="latent")
    joint = jedi_pipe([dog_refs[:2], cat_refs], ["a dog", "a cat"], generator=[_gen(1), _gen(2)], **kw).set_latents
    dog = jedi_pipe(dog_refs[:2], "a dog", generator=[_gen(1)], **kw).set_latents
    cat = jedi_pipe(cat_refs, "a cat", generator=[_gen(2)], **kw).set_latents
    torch.testing.assert_close(joint[0], dog[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(joint[1], cat[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="reference_images: 1 reference sets for 2 prompts"):
        jedi_pipe([dog_refs[:2]], ["a dog", "a cat"], num_inference_steps=1)
    with pytest.raises(ValueError, match="same number of references"):
        jedi_pipe([dog_refs[:2], cat_refs[:1]], ["a dog", "a cat"], num_inference_steps=1)


def test_ancestral_scheduler_with_a_generator_per_image(jedi_pipe, dog_refs):
    from diffusers import EulerAncestralDiscreteScheduler

    original = jedi_pipe.scheduler
    jedi_pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(original.config)
    try:
        out = jedi_pipe(
            dog_refs[:2], ["a dog", "a dog"], num_inference_steps=2, generator=[_gen(1), _gen(2)], output_type="np"
        )
        assert out.images.shape == (2, 64, 64, 3)
    finally:
        jedi_pipe.scheduler = original


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_follows_the_float32_run(dog_refs, dtype):
    """The GPU serves and benchmarks JeDi in half precision (``serving.dtype=auto``, the production
    benchmark), loaded through the zoo with ``dtype``: the same code in bf16/fp16 (reference encoding,
    masks, both guidances) must track the float32 run, not just produce finite numbers. Half precision
    runs on CPU too, slowly, so this is checked here."""
    from core import zoo

    zoo.build("tiny", ["jedi"])
    kw = dict(num_inference_steps=3, guidance_scale=3.0, image_guidance_scale=2.0, output_type="latent")
    full, half = zoo.load("jedi", "tiny"), zoo.load("jedi", "tiny", dtype=dtype)
    assert {half.unet.dtype, half.vae.dtype, half.text_encoder.dtype} == {dtype}
    ref = full(dog_refs[:2], "a dog", generator=_gen(), **kw).set_latents
    out = half(dog_refs[:2], "a dog", generator=_gen(), **kw).set_latents
    assert out.dtype == dtype and torch.isfinite(out).all()
    corr = torch.corrcoef(torch.stack([ref.flatten(), out.float().flatten()]))[0, 1]
    assert corr > 0.99, f"{dtype} run drifted from float32 (correlation {corr:.4f})"
