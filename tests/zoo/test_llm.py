"""The ``llm`` family: reproducible tiny Qwen2 + byte-level tokenizer, ChatML, deterministic batched generation."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch

from core import zoo
from core.zoo.families import llm as llm_family

PROMPTS = [
    "hi",
    "Describe a photo of a dog on the beach in three short sentences, please.",
    "a cat",
]


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llm")
    zoo.get("llm").build_tiny(out)
    return out


@pytest.fixture(scope="module")
def lm(tiny_dir) -> llm_family.ChatLM:
    return zoo.load("llm", str(tiny_dir))


def test_two_builds_are_byte_identical_safetensors(tiny_dir, tmp_path):
    zoo.get("llm").build_tiny(tmp_path)
    assert _digests(tmp_path) == _digests(tiny_dir)
    assert "model.safetensors" in _digests(tiny_dir) and "tokenizer.json" in _digests(tiny_dir)
    assert not [p for p in tiny_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth")]


def test_tokenizer_is_byte_level_with_chatml_specials(lm, tiny_dir):
    from tokenizers import Tokenizer

    tok, config = lm.tokenizer, lm.model.config
    assert config.vocab_size == len(tok)
    eot, im_start, im_end = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert im_start != eot and len(tok) - 3 <= min(eot, im_start, im_end)  # specials take the last ids
    assert (tok.eos_token_id, tok.pad_token_id) == (im_end, eot)
    assert (config.eos_token_id, config.pad_token_id) == (im_end, eot)
    assert tok.padding_side == "left"
    # Any text round-trips (every byte has a token) and the loaded tokenizer splits text exactly like
    # the tokenizer.json that was built (transformers re-creates Qwen2's pipeline when loading).
    raw = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    for text in ["a photo of a dog  on the beach, 2024!\n\n", "日本 é 🐕\t<|im_end|> it's"]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert ids == raw.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids) == text
    assert len(tok("a photo of a dog").input_ids) < len("a photo of a dog"), "merges were learned"
    chat = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert chat == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    generation = json.loads((tiny_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [im_end, eot]


def test_greedy_generation_is_deterministic_and_depends_on_the_prompt(lm):
    first = lm.generate(PROMPTS, max_new_tokens=12)
    assert isinstance(first, list) and len(first) == len(PROMPTS)
    assert all(isinstance(text, str) for text in first)
    assert lm.generate(PROMPTS, max_new_tokens=12, seed=123) == first, "greedy ignores the seed"
    assert len(set(first)) > 1, "a degenerate tiny model would hide padding bugs"
    assert lm.generate(PROMPTS[:1], system="You write prompts.", max_new_tokens=12) != first[:1]


def test_left_padded_batch_equals_one_by_one(lm):
    lengths = [len(lm.tokenizer(p).input_ids) for p in PROMPTS]
    assert len(set(lengths)) == len(PROMPTS), "prompts must differ in length to exercise padding"
    batch = lm.generate_ids(PROMPTS, max_new_tokens=12)
    assert batch == [lm.generate_ids([p], max_new_tokens=12)[0] for p in PROMPTS]


def test_max_new_tokens_is_respected_and_text_is_the_decoded_ids(lm):
    short = lm.generate_ids(PROMPTS, max_new_tokens=3)
    long = lm.generate_ids(PROMPTS, max_new_tokens=9)
    assert all(len(ids) <= 3 for ids in short) and any(len(ids) > 3 for ids in long)
    assert all(lg[: len(sh)] == sh for sh, lg in zip(short, long, strict=True))
    special = set(lm.tokenizer.all_special_ids)
    assert not any(special & set(ids) for ids in long)
    texts = lm.generate(PROMPTS, max_new_tokens=9)
    assert texts == [lm.tokenizer.decode(ids) for ids in long]
    assert not any("<|im" in t or "<|endoftext|>" in t for t in texts)


def test_sampling_is_reproducible_per_seed_and_leaves_the_global_rng_alone(lm):
    state = torch.get_rng_state()
    a = lm.generate(PROMPTS, max_new_tokens=16, temperature=1.0, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert lm.generate(PROMPTS, max_new_tokens=16, temperature=1.0, seed=1) == a
    assert lm.generate(PROMPTS, max_new_tokens=16, temperature=1.0, seed=2) != a
    assert a != lm.generate(PROMPTS, max_new_tokens=16)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(PROMPTS, temperature=-1.0)
    assert lm.generate([]) == []


def test_the_checkpoints_sampling_defaults_do_not_leak_into_generate(lm, tiny_dir, tmp_path):
    # Qwen2.5-Instruct ships sampling defaults; transformers applies them to any setting left unset.
    for p in tiny_dir.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    generation = json.loads((tiny_dir / "generation_config.json").read_text())
    generation.update(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.1)
    (tmp_path / "generation_config.json").write_text(json.dumps(generation))
    qwen_like = zoo.load("llm", str(tmp_path))
    assert qwen_like.generate_ids(PROMPTS, max_new_tokens=12) == lm.generate_ids(PROMPTS, max_new_tokens=12)
    sampled = {"max_new_tokens": 12, "temperature": 0.8, "seed": 3}
    assert qwen_like.generate_ids(PROMPTS, **sampled) == lm.generate_ids(PROMPTS, **sampled)


def test_a_pickle_only_checkpoint_is_refused_before_it_runs(tiny_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for p in tiny_dir.iterdir():
        if p.name != "model.safetensors":
            (tmp_path / p.name).write_bytes(p.read_bytes())
    torch.save({"lm_head.weight": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(zoo.UnsafeWeightsError, match="only pickled weights"):
        zoo.load("llm", str(tmp_path))
    assert not marker.exists()


def test_production_reference_offline_fails_fast_with_the_zoo_message(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert zoo.get("llm").production == "Qwen/Qwen2.5-1.5B-Instruct"
    start = time.perf_counter()
    with pytest.raises(zoo.ModelNotFoundError, match="not in the local Hugging Face cache"):
        zoo.load("llm", "Qwen/Qwen2.5-1.5B-Instruct")
    assert time.perf_counter() - start < 15
