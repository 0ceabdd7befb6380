"""CoRe's context losses against an independent computation, the attention-map processor, and TTO."""

from __future__ import annotations

import pytest
import torch

from core.attention_maps import STORE_KWARG, AttentionStore, capture_cross_attention
from core.methods.context_reg import context_losses, prompt_pairs
from core.methods.core_method import optimize_embedding_for_prompt, optimized_for
from core.subjects import SubjectCard, SubjectWeights
from tests.finetune.conftest import assert_same, ft_config, make_tuner, state

PROMPT = "a photo of {0} on the beach"


def independent_losses(text_encoder, unet, tokenizer, token: str, class_word: str, noisy, timesteps):
    """L_emb and L_attn computed another way: the tokenizer on whole prompts, positions found by id,
    attention probabilities recomputed from each cross-attention layer's inputs caught by hooks."""
    prompts = [PROMPT.replace("{0}", token), PROMPT.replace("{0}", class_word)]
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    span_ids = [tokenizer.convert_tokens_to_ids(token), tokenizer(class_word, add_special_tokens=False).input_ids[0]]
    context = [
        [i for i, t in enumerate(row.tolist()) if t not in specials and t != span]
        for row, span in zip(ids, span_ids, strict=True)
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
    layer_losses = []
    for name, calls in caught.items():
        attn = dict(unet.named_modules())[name]
        maps = []
        for (hidden, text), ctx in zip(calls, context, strict=True):
            q = attn.to_q(hidden).unflatten(-1, (attn.heads, -1)).transpose(1, 2).double()
            k = attn.to_k(text).unflatten(-1, (attn.heads, -1)).transpose(1, 2).double()
            probs = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1).mean(dim=1)
            maps.append(probs[..., ctx])
        layer_losses.append(((maps[0] - maps[1]) ** 2).mean())
    return float(l_emb), float(sum(layer_losses) / len(layer_losses)), len(caught)


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
    tok = core_tuner.models.tokenizer
    pairs = prompt_pairs(tok, ["{0} wearing a red hat"], "<sks>", "stuffed animal")
    subject, klass = pairs.subject_ids[0].tolist(), pairs.class_ids[0].tolist()
    assert [subject[i] for i in pairs.subject_context[0]] == [klass[i] for i in pairs.class_context[0]]
    assert tok.decode([subject[i] for i in pairs.subject_context[0]]) == "wearing a red hat"
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


def test_test_time_optimization_changes_only_the_embedding(zoo_home, tmp_path):
    from core import zoo
    from core.methods.tokens import find_token

    cfg = ft_config(tmp_path)
    pipe = zoo.load("sd", "tiny")
    g = torch.Generator().manual_seed(3)
    pipe.load_textual_inversion({"<sks>": torch.randn(1, 32, generator=g)}, token="<sks>")
    card = SubjectCard(
        subject_id="dog-core",
        method="core",
        base_model="tiny",
        tokens=["<sks>"],
        class_word="dog",
        prompt_template="a photo of {0}",
        weights=SubjectWeights(embeddings="learned_embeds.safetensors"),
    )
    ids = find_token(pipe.tokenizer, "<sks>", "cpu").ids
    weight = pipe.text_encoder.get_input_embeddings().weight
    unet, encoder, trained = state(pipe.unet), state(pipe.text_encoder), weight.detach()[ids].clone()
    with optimized_for(pipe, card, PROMPT, cfg.finetune.core, steps=3, side=32, seed=0):
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
    optimize_embedding_for_prompt(pipe, card, PROMPT, cfg.finetune.core, steps=3, side=32, seed=0)
    torch.testing.assert_close(weight.detach()[ids], tuned, rtol=0, atol=0)  # deterministic per seed
    with pytest.raises(ValueError, match="needs \\{0\\}"):
        optimize_embedding_for_prompt(pipe, card, "a photo of <sks>", cfg.finetune.core, steps=1, side=32, seed=0)
