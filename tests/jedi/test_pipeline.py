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


def _gens(*seeds):
    return [_gen(s) for s in seeds]


def test_fixed_seed_is_deterministic_and_shapes_are_right(jedi_pipe, dog_refs):
    kw = dict(num_images_per_prompt=2, num_inference_steps=3, image_guidance_scale=1.5, output_type="np")
    a = jedi_pipe(dog_refs[:2], ["a dog on the beach", "a dog in the snow"], generator=_gen(), **kw)
    b = jedi_pipe(dog_refs[:2], ["a dog on the beach", "a dog in the snow"], generator=_gen(), **kw)
    c = jedi_pipe(dog_refs[:2], ["a dog on the beach", "a dog in the snow"], generator=_gen(1), **kw)
    assert a.images.shape == (4, 64, 64, 3)
    # Joint targets (the default): 4 images of one reference set, 2 references -> 2 sets of 2 + 2.
    assert len(a.set_latents) == 2 and all(s.shape == (4, 4, 8, 8) for s in a.set_latents)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_reference_slots_end_as_the_clean_reference_latents(jedi_pipe, dog_refs):
    out = jedi_pipe(dog_refs[:2], "a dog", num_inference_steps=3, generator=_gen(), output_type="latent")
    from core.jedi.images import prepare_images

    clean = jedi_pipe.encode_images(prepare_images(dog_refs[:2], 64, 64))
    torch.testing.assert_close(out.set_latents[0][:2], clean, atol=0, rtol=0)
    torch.testing.assert_close(out.images[0], out.set_latents[0][2], atol=0, rtol=0)


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
    return x, torch.tensor(400), refs, generate, text, null, ((num_sets, n),)


def _unet_train_like(pipe):
    """Perturb the zero-initialised reference weights so that the branches really differ."""
    import copy

    p = copy.copy(pipe)
    p.unet = copy.deepcopy(pipe.unet)
    with torch.no_grad():
        p.unet.conv_in.weight[:, 4:].normal_(0, 0.1, generator=_gen(3))
    return p


@pytest.mark.parametrize("guidance", ["paper", "paper-unknown", "decomposed"])
def test_lambda_one_is_the_plain_conditional_prediction(jedi_pipe, guidance):
    pipe = _unet_train_like(jedi_pipe)
    x, t, refs, generate, text, null, layout = _guidance_inputs(pipe)
    s = 1.0 if guidance == "decomposed" else None
    with torch.no_grad():
        plain = pipe.unet(
            unet_input(x, refs, generate), t, text, cross_attention_kwargs=attention_kwargs(layout)
        ).sample
        got = pipe.predict_noise(x, t, refs, generate, text, null, layout, guidance, 1.0, s)
    torch.testing.assert_close(got, plain, atol=1e-6, rtol=0)


def test_decomposed_formula_and_batched_equals_unbatched(jedi_pipe):
    pipe = _unet_train_like(jedi_pipe)
    x, t, refs, generate, text, null, layout = _guidance_inputs(pipe)
    s, lam = 4.0, 2.5
    with torch.no_grad():
        batched = pipe.predict_noise(x, t, refs, generate, text, null, layout, "decomposed", lam, s)
        separate = pipe.predict_noise(
            x, t, refs, generate, text, null, layout, "decomposed", lam, s, batch_guidance=False
        )
        kw = dict(cross_attention_kwargs=attention_kwargs(layout))
        eps_rt = pipe.unet(unet_input(x, refs, generate), t, text, **kw).sample
        eps_r = pipe.unet(unet_input(x, refs, generate), t, null, **kw).sample
        tg = generate.bool()
        alone = unet_input(x[tg], torch.zeros_like(refs[tg]), torch.ones(int(tg.sum())))
        eps_0 = pipe.unet(alone, t, null[tg], cross_attention_kwargs=attention_kwargs(1)).sample
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)
    expected = eps_0 + lam * (eps_r[tg] - eps_0) + s * (eps_rt[tg] - eps_r[tg])
    torch.testing.assert_close(batched[tg], expected, atol=1e-5, rtol=1e-5)


def test_coupling_off_makes_the_target_blind_to_the_references(jedi_pipe):
    pipe = _unet_train_like(jedi_pipe)
    x, t, refs, generate, text, null, layout = _guidance_inputs(pipe)
    other_x = x.clone()
    other_x[generate == 0] = torch.randn_like(other_x[generate == 0])
    other_refs = torch.randn_like(refs)
    tg = generate.bool()
    with torch.no_grad():
        off = [
            pipe.predict_noise(a, t, r, generate, text, null, layout, "paper", 2.0, coupled=False)[tg]
            for a, r in ((x, refs), (other_x, other_refs))
        ]
        on = [
            pipe.predict_noise(a, t, r, generate, text, null, layout, "paper", 2.0, coupled=True)[tg]
            for a, r in ((x, refs), (other_x, other_refs))
        ]
    # With coupling off, the zeroed reference channel of ε⁰ and the target's own inputs are all it sees.
    torch.testing.assert_close(off[0], off[1], atol=1e-6, rtol=0)
    assert not torch.allclose(on[0], on[1], atol=1e-4)


class UNetCalls:
    """Records what the UNet is called with (a forward pre-hook: the model itself runs unchanged)."""

    def __init__(self, unet):
        self.calls: list[dict] = []
        self.handle = unet.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, _module, args, kwargs):
        self.calls.append({"sample": args[0].clone(), "t": args[1], **kwargs})

    def remove(self):
        self.handle.remove()


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("guidance", ["paper", "paper-unknown"])
def test_paper_guidance_is_eq3_on_the_same_joint_set(jedi_pipe, dog_refs, k, guidance):
    """Eq. 3 pinned by an independent computation: ε⁰ is the same set of K+1 images (set sizes 2-4) —
    the same noisy latents, noised references included, in coupled attention — with the clean-reference
    channel zeroed, the mask kept (``paper``) or all 1 (``paper-unknown``), and null text for every
    member; both passes run in one UNet call; several prompts (one set each) per call."""
    from diffusers import DDIMScheduler

    from core.jedi.images import prepare_images

    pipe = _unet_train_like(jedi_pipe)
    pipe.scheduler = DDIMScheduler.from_config(jedi_pipe.scheduler.config)
    prompts, lam, n = ["a dog", "a dog on the beach", "a dog in the snow"], 2.5, k + 1
    calls = UNetCalls(pipe.unet)
    try:
        out = pipe(
            dog_refs[:k],
            prompts,
            num_inference_steps=1,
            guidance=guidance,
            image_guidance_scale=lam,
            joint_targets=False,  # one set of K + 1 per prompt: set sizes 2-4
            generator=[_gen(i) for i in range(3)],
            output_type="latent",
        )
    finally:
        calls.remove()
    assert len(calls.calls) == 1, "both passes share one UNet call"
    call = calls.calls[0]
    sample, t = call["sample"], call["t"]
    assert sample.shape[0] == 2 * 3 * n and call["cross_attention_kwargs"]["set_size"] == ((3, n), (3, n))
    x_t = sample[: 3 * n, :4]

    # The independent computation, from the model's documented input layout and Eq. 3.
    clean = pipe.encode_images(prepare_images(dog_refs[:k], 64, 64))
    is_ref = torch.tensor(([1.0] * k + [0.0]) * 3)
    ref_channel = torch.zeros_like(x_t)
    ref_channel[is_ref.bool()] = clean.repeat(3, 1, 1, 1)
    mask = (1 - is_ref).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    null_mask = mask if guidance == "paper" else torch.ones_like(mask)
    texts = pipe.encode_text(["", *prompts])
    text = torch.stack([texts[0] if j < k else texts[1 + i] for i in range(3) for j in range(n)])
    null = texts[0].expand_as(text)
    with torch.no_grad():
        eps = pipe.unet(torch.cat([x_t, ref_channel, mask], 1), t, text, cross_attention_kwargs={"set_size": n}).sample
        eps_0 = pipe.unet(
            torch.cat([x_t, torch.zeros_like(x_t), null_mask], 1), t, null, cross_attention_kwargs={"set_size": n}
        ).sample
    guided = eps_0 + lam * (eps - eps_0)
    expected = pipe.scheduler.step(guided, t, x_t).prev_sample[~is_ref.bool()]

    assert x_t[is_ref.bool()].abs().sum() > 0, "the noised references are in the set"
    torch.testing.assert_close(sample[3 * n :, :4], x_t, atol=0, rtol=0)  # same x_t in ε⁰
    torch.testing.assert_close(out.images, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(eps_0, eps, atol=1e-3), "the two passes really differ"


@pytest.mark.parametrize(
    ("k", "m", "sizes"),
    [(2, 2, [4]), (1, 5, [4, 3]), (3, 2, [4, 4]), (2, 3, [4, 3])],
)
def test_joint_targets_draw_the_images_of_one_reference_set_together(jedi_pipe, dog_refs, k, m, sizes):
    calls = UNetCalls(jedi_pipe.unet)
    try:
        out = jedi_pipe(
            dog_refs[:k],
            "a dog",
            num_images_per_prompt=m,
            num_inference_steps=1,
            image_guidance_scale=1.0,
            joint_targets=True,
            generator=[_gen(i) for i in range(m)],
            output_type="latent",
        )
    finally:
        calls.remove()
    assert out.images.shape == (m, 4, 8, 8)
    assert sorted((s.shape[0] for s in out.set_latents), reverse=True) == sizes
    assert calls.calls[0]["sample"].shape[0] == sum(sizes), "K + B image passes, not B·(K + 1)"
    for s in out.set_latents:  # the references end clean in every set, the targets follow them
        torch.testing.assert_close(s[:k], out.set_latents[0][:k], atol=0, rtol=0)
    targets = torch.cat([s[k:] for s in out.set_latents])
    assert {tuple(x.flatten()[:4].tolist()) for x in targets} == {tuple(x.flatten()[:4].tolist()) for x in out.images}


def test_joint_targets_with_one_slot_per_set_equal_separate_sets(jedi_pipe, dog_refs):
    kw = dict(num_images_per_prompt=2, num_inference_steps=2, image_guidance_scale=2.0, output_type="latent")
    a = jedi_pipe(dog_refs[:3], "a dog", joint_targets=True, generator=[_gen(1), _gen(2)], **kw).images
    b = jedi_pipe(dog_refs[:3], "a dog", joint_targets=False, generator=[_gen(1), _gen(2)], **kw).images
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_prompt_lists_group_images_by_reference_set(jedi_pipe, dreambooth, dog_refs):
    """With a list of reference lists and a list of prompt lists, each reference set's prompts are drawn
    together (joint targets), and every other set is unaffected by it."""
    cat_refs = [Image.open(dreambooth / "images" / "cat" / f"0{i}.jpg") for i in range(2)]
    kw = dict(num_inference_steps=2, image_guidance_scale=2.0, output_type="latent", joint_targets=True)
    out = jedi_pipe([dog_refs[:2], cat_refs], [["a dog", "a dog running"], ["a cat"]], generator=_gens(1, 2, 3), **kw)
    assert out.images.shape[0] == 3 and sorted(s.shape[0] for s in out.set_latents) == [3, 4]
    dog = jedi_pipe(dog_refs[:2], ["a dog", "a dog running"], generator=_gens(1, 2), **kw).images
    cat = jedi_pipe(cat_refs, "a cat", generator=_gens(3), **kw).images
    torch.testing.assert_close(out.images[:2], dog, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.images[2:], cat, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="prompt: 2 prompt lists need one reference list each"):
        jedi_pipe(dog_refs[:2], [["a dog"], ["a cat"]], num_inference_steps=1)


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
        (dict(image_guidance_scale=float("nan")), "image_guidance_scale: must be a finite number"),
        (dict(image_guidance_scale=-1.0), "image_guidance_scale: must be a finite number >= 0"),
        (dict(guidance="cfg"), "guidance: must be one of paper, paper-unknown, decomposed"),
        (dict(guidance_scale=7.5), "guidance_scale: only guidance 'decomposed' has a separate text scale"),
        (dict(guidance="decomposed", guidance_scale=float("inf")), "guidance_scale: must be a finite number"),
        (dict(joint_targets="yes"), "joint_targets: must be true or false"),
        (dict(generator=[torch.Generator(), torch.Generator()]), "generator: 2 generators for 1 images"),
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
    a = jedi_pipe([dog_refs[0]], "a dog", generator=_gen(), **kw).set_latents[0]
    b = jedi_pipe([arr], "a dog", generator=_gen(), **kw).set_latents[0]
    c = jedi_pipe([tensor], "a dog", generator=_gen(), **kw).set_latents[0]
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
    kw = dict(num_inference_steps=2, image_guidance_scale=1.5, output_type="latent")
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
    kw = dict(num_inference_steps=3, image_guidance_scale=2.0, output_type="latent")
    full, half = zoo.load("jedi", "tiny"), zoo.load("jedi", "tiny", dtype=dtype)
    assert {half.unet.dtype, half.vae.dtype, half.text_encoder.dtype} == {dtype}
    ref = full(dog_refs[:2], "a dog", generator=_gen(), **kw).set_latents[0]
    out = half(dog_refs[:2], "a dog", generator=_gen(), **kw).set_latents[0]
    assert out.dtype == dtype and torch.isfinite(out).all()
    corr = torch.corrcoef(torch.stack([ref.flatten(), out.float().flatten()]))[0, 1]
    assert corr > 0.99, f"{dtype} run drifted from float32 (correlation {corr:.4f})"
