"""Coupled self-attention against diffusers' processor and an explicit naive reference."""

from __future__ import annotations

import threading

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from core.jedi import JeDiAttnProcessor, attention_kwargs, set_jedi_attention


def naive_coupled(attn: Attention, x: torch.Tensor, set_size: int) -> torch.Tensor:
    """Softmax over all tokens of the set, written out with explicit matmuls."""
    bn, length, channels = x.shape
    heads = attn.heads
    out = torch.empty_like(x)
    for s in range(bn // set_size):
        tokens = x[s * set_size : (s + 1) * set_size].reshape(1, set_size * length, channels)
        q, k, v = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
        d = q.shape[-1] // heads
        q, k, v = (m.view(set_size * length, heads, d).transpose(0, 1) for m in (q, k, v))
        weights = torch.softmax(q @ k.transpose(1, 2) / d**0.5, dim=-1)  # (heads, N·L, N·L)
        mixed = (weights @ v).transpose(0, 1).reshape(1, set_size * length, heads * d)
        mixed = attn.to_out[1](attn.to_out[0](mixed))
        out[s * set_size : (s + 1) * set_size] = mixed.reshape(set_size, length, channels)
    return out


@pytest.fixture()
def attn():
    torch.manual_seed(0)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def test_set_size_one_equals_diffusers_processor(attn):
    x = torch.randn(6, 10, 32)
    expected = AttnProcessor2_0()(attn, x)
    torch.testing.assert_close(JeDiAttnProcessor(coupled=True)(attn, x, set_size=1), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("set_size", [2, 3])
def test_coupled_equals_naive_softmax_over_the_set(attn, set_size):
    x = torch.randn(2 * set_size, 10, 32)
    with torch.no_grad():
        got = JeDiAttnProcessor(coupled=True)(attn, x, set_size=set_size)
        torch.testing.assert_close(got, naive_coupled(attn, x, set_size), atol=1e-5, rtol=1e-5)
        # and it really couples: per-image attention gives something else
        assert not torch.allclose(got, AttnProcessor2_0()(attn, x), atol=1e-3)


def test_members_are_permutation_equivariant_and_sets_isolated(attn):
    proc = JeDiAttnProcessor(coupled=True)
    x = torch.randn(6, 10, 32)  # two sets of 3
    with torch.no_grad():
        base = proc(attn, x, set_size=3)
        perm = torch.tensor([2, 0, 1, 3, 4, 5])
        torch.testing.assert_close(proc(attn, x[perm], set_size=3), base[perm], atol=1e-5, rtol=1e-5)
        other = x.clone()
        other[3:] = torch.randn(3, 10, 32)  # change the second set only
        changed = proc(attn, other, set_size=3)
        torch.testing.assert_close(changed[:3], base[:3], atol=0, rtol=0)
        assert not torch.allclose(changed[3:], base[3:])


def test_segment_layout_equals_separate_calls(attn):
    proc = JeDiAttnProcessor(coupled=True)
    x = torch.randn(2 * 3 + 2, 10, 32)  # two sets of 3, then two images alone
    with torch.no_grad():
        joint = proc(attn, x, set_size=((2, 3), (2, 1)))
        torch.testing.assert_close(joint[:6], proc(attn, x[:6], set_size=3), atol=1e-6, rtol=0)
        torch.testing.assert_close(joint[6:], proc(attn, x[6:], set_size=1), atol=1e-6, rtol=0)


def test_bad_layouts_name_set_size(attn):
    proc = JeDiAttnProcessor(coupled=True)
    with pytest.raises(ValueError, match="set_size: a batch of 5 images"):
        proc(attn, torch.randn(5, 4, 32), set_size=2)
    with pytest.raises(ValueError, match="set_size: segments"):
        proc(attn, torch.randn(5, 4, 32), set_size=((1, 3),))


def test_cross_attention_stays_per_image(tiny_sd):
    unet = tiny_sd.unet
    original = unet.attn_processors
    try:
        set_jedi_attention(unet)
        kinds = {name: proc.coupled for name, proc in unet.attn_processors.items()}
        assert kinds and all(c == name.endswith("attn1.processor") for name, c in kinds.items())
    finally:
        unet.set_attn_processor(original)


def test_unet_with_set_size_one_equals_base_unet(tiny_sd):
    import copy

    base = tiny_sd.unet
    jedi = copy.deepcopy(base)
    set_jedi_attention(jedi)
    torch.manual_seed(1)
    x, t, text = torch.randn(3, 4, 8, 8), torch.tensor(500), torch.randn(3, 77, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            jedi(x, t, text, cross_attention_kwargs=attention_kwargs(1)).sample,
            base(x, t, text).sample,
            atol=1e-5,
            rtol=0,
        )


def test_concurrent_calls_with_different_set_sizes_do_not_interfere(tiny_sd):
    import copy

    unet = copy.deepcopy(tiny_sd.unet)
    set_jedi_attention(unet)
    torch.manual_seed(2)
    x, t, text = torch.randn(6, 4, 8, 8), torch.tensor(300), torch.randn(6, 77, 32)
    with torch.no_grad():
        expected = {n: unet(x, t, text, cross_attention_kwargs=attention_kwargs(n)).sample for n in (1, 2, 3)}
    results: dict[int, list[torch.Tensor]] = {1: [], 2: [], 3: []}

    def worker(n: int) -> None:
        with torch.no_grad():
            for _ in range(3):
                results[n].append(unet(x, t, text, cross_attention_kwargs=attention_kwargs(n)).sample)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for n, outs in results.items():
        for out in outs:
            torch.testing.assert_close(out, expected[n], atol=1e-6, rtol=0)
    assert not torch.allclose(expected[1], expected[3], atol=1e-4)
