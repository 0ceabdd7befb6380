"""CoRe's context losses against an independent computation, the attention-map processor, and TTO."""

from __future__ import annotations

import pytest
import torch

from core.attention_maps import STORE_KWARG, AttentionStore, capture_cross_attention
from core.config import load_config
from core.methods.context_reg import PromptPairs, attention_loss, context_losses, embedding_loss, prompt_pairs
from core.methods.core_method import optimize_embedding_for_prompt, optimized_for
from core.subjects import INSTANCE_LATENTS_FILE, SubjectCard, SubjectWeights
from tests.finetune.conftest import assert_same, ft_config, make_tuner, state

PROMPT = "a photo of {0} on the beach"


def independent_losses(text_encoder, unet, tokenizer, token: str, class_word: str, noisy, timesteps):
    """L_emb and L_attn computed another way: the tokenizer on whole prompts, positions found by id,
    attention probabilities recomputed from each cross-attention layer's inputs caught by hooks."""
    prompts = [PROMPT.replace("{0}", token), PROMPT.replace("{0}", class_word)]
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    span_ids = [tokenizer.convert_tokens_to_ids(token), tokenizer(class_word, add_special_tokens=False).input_ids[0]]
    ends = [row.tolist().index(tokenizer.eos_token_id) for row in ids]  # the end token; padding follows it
    context = [
        [i for i, t in enumerate(row.tolist()[: end + 1]) if t != span]
        for row, span, end in zip(ids, span_ids, ends, strict=True)
    ]
    with torch.no_grad():
        states = text_encoder(ids)[0].double()
    cos = [
        (states[0, i] @ states[1, j]) / (states[0, i].norm() * states[1, j].norm())
        for i, j in zip(*context, strict=True)
    ]
    l_emb = sum(1 - c for c in cos) / len(cos)

    caught: dict[str, list] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda mod, args, kwargs, name=name: caught.setdefault(name, []).append(
                (args[0] if args else kwargs["hidden_states"], kwargs["encoder_hidden_states"])
            ),
            with_kwargs=True,
        )
        for name, module in unet.named_modules()
        if name.endswith("attn2")
    ]
    try:
        with torch.no_grad():
            for k in range(2):
                unet(noisy, timesteps, text_encoder(ids[k : k + 1])[0])
    finally:
        for h in hooks:
            h.remove()
    # Eq. 4: mu_i = mean of token i's maps (spatial mean per layer, then the mean over layers).
    layer_means = [[], []]
    for name, calls in caught.items():
        attn = dict(unet.named_modules())[name]
        for side, ((hidden, text), ctx) in enumerate(zip(calls, context, strict=True)):
            q = attn.to_q(hidden).unflatten(-1, (attn.heads, -1)).transpose(1, 2).double()
            k = attn.to_k(text).unflatten(-1, (attn.heads, -1)).transpose(1, 2).double()
            probs = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1).mean(dim=1)  # (1, Q, T)
            layer_means[side].append([float(probs[0, :, i].mean()) for i in ctx])
    mu = [[sum(layer[i] for layer in side) / len(side) for i in range(len(side[0]))] for side in layer_means]
    l_attn = sum((a - b) ** 2 for a, b in zip(*mu, strict=True)) / len(mu[0])
    return float(l_emb), l_attn, len(caught)


@pytest.fixture(scope="module")
def core_tuner(zoo_home, tmp_path_factory, dog_photos):
    return make_tuner(ft_config(tmp_path_factory.mktemp("core")), "core", dog_photos, class_images=dog_photos[:2])


def test_context_losses_are_zero_when_the_token_is_the_class_word_and_match_an_independent_computation(core_tuner):
    m, token = core_tuner.models, core_tuner.token
    weight = m.text_encoder.get_input_embeddings().weight
    dog = m.tokenizer("dog", add_special_tokens=False).input_ids
    assert len(dog) == 1 and torch.equal(weight[token.ids[0]], weight[dog[0]]), "initialised from the class word"
    pairs = prompt_pairs(m.tokenizer, [PROMPT], token.text, "dog")
    g = torch.Generator().manual_seed(0)
    noisy, timesteps = torch.randn(1, 4, 4, 4, generator=g), torch.tensor([500])
    l_emb, l_attn = context_losses(m.text_encoder, m.unet, pairs, noisy, timesteps, with_attention=True)
    assert abs(float(l_emb)) < 1e-6 and float(l_attn) < 1e-12

    original = weight.detach()[token.ids].clone()
    try:
        with torch.no_grad():
            weight[token.ids] = original + 0.5 * torch.randn(original.shape, generator=g)
        l_emb, l_attn = context_losses(m.text_encoder, m.unet, pairs, noisy, timesteps, with_attention=True)
        ref_emb, ref_attn, layers = independent_losses(
            m.text_encoder, m.unet, m.tokenizer, "<sks>", "dog", noisy, timesteps
        )
    finally:
        with torch.no_grad():
            weight[token.ids] = original
    assert layers == 7, "every cross-attention layer of the tiny UNet"
    assert float(l_emb) > 1e-4 and float(l_attn) > 0
    assert float(l_emb) == pytest.approx(ref_emb, rel=1e-4)
    assert float(l_attn) == pytest.approx(ref_attn, rel=1e-3)


def test_prompt_pairs_align_context_around_spans_of_different_lengths(core_tuner):
    """Context = every token but the subject span and the padding: the start and end tokens count."""
    tok = core_tuner.models.tokenizer
    pairs = prompt_pairs(tok, ["{0} wearing a red hat"], "<sks>", "stuffed animal")
    subject, klass = pairs.subject_ids[0].tolist(), pairs.class_ids[0].tolist()
    context = [subject[i] for i in pairs.subject_context[0]]
    assert context == [klass[i] for i in pairs.class_context[0]]
    assert context[0] == tok.bos_token_id and context[-1] == tok.eos_token_id
    assert tok.decode(context[1:-1]) == "wearing a red hat"
    assert pairs.subject_context[0].tolist() == [0, 2, 3, 4, 5, 6] and pairs.class_context[0].tolist() == [
        0,
        3,
        4,
        5,
        6,
        7,
    ]
    whole = tok("<sks> wearing a red hat").input_ids  # the tokenizer on the whole prompt agrees
    assert (
        subject[: len(whole)] == whole and klass[: len(whole) + 1] == tok("stuffed animal wearing a red hat").input_ids
    )
    with pytest.raises(ValueError, match="exactly once"):
        prompt_pairs(tok, ["a photo"], "<sks>", "dog")


def test_attention_capture_leaves_the_unet_output_unchanged(zoo_home):
    from core import zoo

    unet = zoo.load("sd", "tiny").unet
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        plain = unet(x, torch.tensor([10, 900]), text).sample
        names = capture_cross_attention(unet)
        assert capture_cross_attention(unet) == names, "idempotent"
        store = AttentionStore()
        captured = unet(x, torch.tensor([10, 900]), text, cross_attention_kwargs={STORE_KWARG: store}).sample
        again = unet(x, torch.tensor([10, 900]), text).sample
    assert torch.equal(plain, captured) and torch.equal(plain, again)
    assert sorted(store.maps) == sorted(names) and len(names) == 7
    for probs in store.maps.values():
        assert probs.shape[0] == 2 and probs.shape[2] == 77
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))


def _card() -> SubjectCard:
    return SubjectCard(
        subject_id="dog-core",
        method="core",
        base_model="tiny",
        tokens=["<sks>"],
        class_word="dog",
        prompt_template="a photo of {0}",
        weights=SubjectWeights(embeddings="learned_embeds.safetensors", instance_latents=INSTANCE_LATENTS_FILE),
    )


def _pipe_with_token():
    from core import zoo

    pipe = zoo.load("sd", "tiny")
    g = torch.Generator().manual_seed(3)
    pipe.load_textual_inversion({"<sks>": torch.randn(1, 32, generator=g)}, token="<sks>")
    return pipe


def test_test_time_optimization_changes_only_the_embedding(zoo_home, tmp_path, core_tuner):
    from core.methods.tokens import find_token

    cfg = ft_config(tmp_path)
    pipe, card, latents = _pipe_with_token(), _card(), core_tuner.photo_latents()
    assert latents[0].shape == (len(core_tuner.instance[0][0]), 4, 4, 4), "one latent per photo"
    ids = find_token(pipe.tokenizer, "<sks>", "cpu").ids
    weight = pipe.text_encoder.get_input_embeddings().weight
    unet, encoder, trained = state(pipe.unet), state(pipe.text_encoder), weight.detach()[ids].clone()
    with optimized_for(pipe, card, latents, PROMPT, cfg.finetune.core, steps=3, seed=0):
        tuned = weight.detach()[ids].clone()
        assert not torch.equal(tuned, trained), "TTO did not move the embedding"
        after = state(pipe.text_encoder)
        table = next(k for k, v in pipe.text_encoder.named_parameters() if v is weight)
        keep = torch.ones(weight.shape[0], dtype=torch.bool)
        keep[ids] = False
        assert torch.equal(after[table][keep], encoder[table][keep])
        assert_same({k: v for k, v in encoder.items() if k != table}, {k: v for k, v in after.items() if k != table})
        assert_same(unet, state(pipe.unet))
    assert torch.equal(weight.detach()[ids], trained), "the trained rows come back after the prompt"
    assert not weight.requires_grad
    optimize_embedding_for_prompt(pipe, card, latents, PROMPT, cfg.finetune.core, steps=3, seed=0)
    torch.testing.assert_close(weight.detach()[ids], tuned, rtol=0, atol=0)  # deterministic per seed
    with pytest.raises(ValueError, match="needs \\{0\\}"):
        optimize_embedding_for_prompt(pipe, card, latents, "a photo of <sks>", cfg.finetune.core, steps=1, seed=0)


def test_test_time_optimization_noises_the_photos_latents_and_has_no_diffusion_loss(zoo_home, tmp_path, core_tuner):
    """Other latents → another result (the photos are what is noised); with both context weights and
    the weight decay at 0 nothing moves the embedding (no diffusion loss); lr is the authors' 5e-4."""
    from core.methods.tokens import find_token

    cfg = ft_config(tmp_path).finetune.core
    assert (cfg.tto_steps, cfg.tto_optim.lr) == (10, 5e-4)
    pipe, card, latents = _pipe_with_token(), _card(), core_tuner.photo_latents()
    weight = pipe.text_encoder.get_input_embeddings().weight
    ids = find_token(pipe.tokenizer, "<sks>", "cpu").ids
    rows = {}
    attention_only = cfg.model_copy(update={"lambda_emb": 0.0})  # L_emb does not see the latents
    for name, lat in (("photos", latents), ("other", (latents[0].flip(-1), latents[1]))):
        with optimized_for(pipe, card, lat, PROMPT, attention_only, steps=2, seed=0):
            rows[name] = weight.detach()[ids].clone()
    assert not torch.equal(rows["photos"], rows["other"])
    silent = cfg.model_copy(
        update={
            "lambda_emb": 0.0,
            "lambda_attn": 0.0,
            "tto_optim": cfg.tto_optim.model_copy(update={"weight_decay": 0.0}),
        }
    )
    before = weight.detach()[ids].clone()
    with optimized_for(pipe, card, latents, PROMPT, silent, steps=2, seed=0):
        assert torch.equal(weight.detach()[ids], before)


def test_a_core_subject_without_photo_latents_names_the_file(tmp_path):
    from core.methods.core_method import load_instance_latents

    card = _card().model_copy(update={"weights": SubjectWeights(embeddings="learned_embeds.safetensors")})
    with pytest.raises(ValueError, match="instance_latents.safetensors"):
        load_instance_latents(tmp_path, card)


def test_eq3_and_eq4_on_small_tensors():
    """The losses against the paper's equations written out as loops over tokens, layers and pixels."""
    g = torch.Generator().manual_seed(0)
    pairs = PromptPairs(
        subject_ids=torch.zeros(1, 8, dtype=torch.long),
        class_ids=torch.zeros(1, 8, dtype=torch.long),
        subject_context=torch.tensor([[0, 2, 3, 4]]),
        class_context=torch.tensor([[0, 3, 4, 5]]),
    )
    a, b = (
        torch.randn(1, 8, 5, generator=g, dtype=torch.float64),
        torch.randn(1, 8, 5, generator=g, dtype=torch.float64),
    )
    cos = [
        float(a[0, i] @ b[0, j] / (a[0, i].norm() * b[0, j].norm()))
        for i, j in zip([0, 2, 3, 4], [0, 3, 4, 5], strict=True)
    ]
    assert float(embedding_loss(a, b, pairs)) == pytest.approx(sum(1 - c for c in cos) / 4, rel=1e-12)

    stores = []
    for _ in range(2):
        store = AttentionStore()
        for layer, queries in enumerate((16, 4, 1)):  # layers of different resolutions
            store.add(f"layer{layer}", torch.softmax(torch.randn(2, queries, 8, generator=g, dtype=torch.float64), -1))
        stores.append(store)
    total = 0.0
    for batch in range(2):
        for i, j in zip([0, 2, 3, 4], [0, 3, 4, 5], strict=True):
            mu = sum(float(m[batch, :, i].mean()) for m in stores[0].maps.values()) / 3
            mu_class = sum(float(m[batch, :, j].mean()) for m in stores[1].maps.values()) / 3
            total += (mu - mu_class) ** 2
    eq4 = total / (2 * 4)
    assert float(attention_loss(stores[0], stores[1], pairs)) == pytest.approx(eq4, rel=1e-12)
    per_pixel = (
        sum(
            float(((stores[0].maps[k][..., [0, 2, 3, 4]] - stores[1].maps[k][..., [0, 3, 4, 5]]) ** 2).mean())
            for k in stores[0].maps
        )
        / 3
    )
    assert per_pixel > 2 * eq4, "the earlier per-pixel form is another quantity"


def test_regularization_prompts_follow_the_subjects_class(zoo_home, tmp_path, core_tuner):
    """Animate classes take the animate list, every other class the inanimate one (paper 003 §Datasets)."""
    from core.methods import method_plan
    from core.methods.plan import StepState

    cfg = ft_config(
        tmp_path,
        "finetune.core.animate_prompts=['a {0} running']",
        "finetune.core.inanimate_prompts=['a {0} on a table']",
    ).finetune
    default = load_config().finetune.core
    assert len(default.animate_prompts) == 100 and len(default.inanimate_prompts) == 100
    assert default.regularization_prompts("Stuffed Animal") is default.animate_prompts
    assert default.regularization_prompts("backpack") is default.inanimate_prompts
    (plugin,) = method_plan(cfg, "core").stages[0].plugins
    m, token = core_tuner.models, core_tuner.token
    g = torch.Generator().manual_seed(0)
    noisy, timesteps = torch.randn(2, 4, 4, 4, generator=g), torch.tensor([100, 700])
    with torch.no_grad():
        weight = m.text_encoder.get_input_embeddings().weight
        original = weight[token.ids].clone()
        weight[token.ids] = original + 0.5 * torch.randn(original.shape, generator=g)
    try:
        expected = {}
        for prompt in ("a {0} running", "a {0} on a table"):
            pairs = prompt_pairs(m.tokenizer, [prompt], token.text, "dog")
            expected[prompt] = context_losses(m.text_encoder, m.unet, pairs, noisy, timesteps, with_attention=True)
        for class_word, prompt in (("dog", "a {0} running"), ("teapot", "a {0} on a table")):
            pairs = prompt_pairs(m.tokenizer, [prompt], token.text, class_word)
            want = context_losses(m.text_encoder, m.unet, pairs, noisy, timesteps, with_attention=True)
            step = StepState(m.text_encoder, m.unet, m.tokenizer, token, token.text, class_word, noisy, timesteps, g, 1)
            loss, metrics = plugin.loss(step)
            assert metrics["l_emb"] == pytest.approx(float(want[0]), rel=1e-6)
            assert metrics["l_attn"] == pytest.approx(float(want[1]), rel=1e-6)
            assert float(loss) == pytest.approx(1.5e-4 * float(want[0]) + 0.05 * float(want[1]), rel=1e-6)
        assert float(expected["a {0} running"][0]) != pytest.approx(float(expected["a {0} on a table"][0]), rel=1e-3)
    finally:
        with torch.no_grad():
            weight[token.ids] = original
