"""The ``llm`` family: a chat language model that writes subject descriptions and prompts for S3 data.

Loading goes through transformers' ``AutoModelForCausalLM.from_pretrained(use_safetensors=True)`` and
``AutoTokenizer``; the tiny stand-in is a 2-layer Qwen2 with a byte-level BPE tokenizer built here with
the ``tokenizers`` library (no download), the same special tokens and ChatML template as Qwen2.5, so
prompt formatting, padding and stopping are exercised exactly as in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.zoo.family import Family
from core.zoo.safety import refuse_pickle_only_dir

PRODUCTION = "Qwen/Qwen2.5-1.5B-Instruct"
SEED = 0
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
TINY_MERGES = 64

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""Qwen2.5's ChatML layout without its tool-calling branches and default system prompt."""

# A fixed corpus so the learned merges (and so the tokenizer file) are the same on every build.
_CORPUS = [
    "a photo of a dog on the beach",
    "a photo of a cat sitting on a chair in the kitchen",
    "a red backpack on a wooden table next to the window",
    "a teapot with flowers painted on it, studio lighting",
    "the same dog running in the park, seen from the side",
    "write three short descriptions of the object in different scenes",
    "a high quality photograph of the subject in the snow",
    "a close up of the toy on a shelf, soft light, detailed",
]


@dataclass
class ChatLM:
    """A causal LM with its tokenizer, in eval mode, generating replies to chat prompts.

    Generation settings come only from ``generate``'s arguments (the checkpoint's generation_config
    contributes its stop-token ids, not its sampling defaults), so the tiny and the production model
    behave the same way given the same call, and greedy decoding really is greedy. Sampling is plain
    temperature sampling over the full vocabulary (no top-k / top-p / repetition penalty).
    """

    model: Any
    tokenizer: Any
    name: str
    device: str = "cpu"

    def _stop_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def _chat_texts(self, prompts: list[str], system: str | None) -> list[str]:
        texts = []
        for prompt in prompts:
            messages = ([{"role": "system", "content": system}] if system is not None else []) + [
                {"role": "user", "content": prompt}
            ]
            texts.append(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return texts

    @torch.inference_mode()
    def generate_ids(
        self,
        prompts: list[str],
        *,
        system: str | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> list[list[int]]:
        """New token ids per prompt, cut before the first stop token (at most ``max_new_tokens``).

        Prompts are batched with left padding so every row's continuation starts at the same column.
        With ``temperature > 0`` the draws depend on the seed *and* on the batch (rows share one RNG
        stream); the global torch RNG is left untouched.
        """
        from transformers import GenerationConfig

        if not prompts:
            return []
        if temperature < 0:
            raise ValueError(f"llm: temperature must be >= 0, got {temperature}")
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(
            self._chat_texts(prompts, system), return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        stop = self._stop_ids()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stop[0]
        # Every setting the hub's generation_config.json files commonly carry is pinned here, because
        # transformers fills any setting left unset from the checkpoint's file (Qwen2.5-Instruct's says
        # do_sample, temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.1).
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            eos_token_id=stop,
            pad_token_id=pad,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else 1.0,
            top_k=0 if temperature > 0 else 50,  # 50: transformers' default, which greedy ignores silently
            top_p=1.0,
            typical_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            num_beams=1,
        )
        on_cuda = torch.device(self.device).type == "cuda"
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if on_cuda else []):
            torch.manual_seed(seed)
            out = self.model.generate(**enc, generation_config=config)
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        result = []
        for row in new:
            cut = next((i for i, t in enumerate(row) if t in stop), len(row))
            result.append([t for t in row[:cut] if t != pad])
        return result

    def generate(
        self,
        prompts: list[str],
        *,
        system: str | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> list[str]:
        """Reply text per prompt (ChatML-formatted user turn, optional system turn), specials stripped."""
        ids = self.generate_ids(
            prompts, system=system, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def _tiny_tokenizer() -> Any:
    """Byte-level BPE: all 256 byte symbols, merges learned from ``_CORPUS``, then Qwen's specials.

    The normalizer and pre-tokenizer are Qwen2's own (NFC, its split regex, byte-level): transformers
    loads any tokenizer next to a ``qwen2`` config as ``Qwen2Tokenizer``, which installs exactly these,
    so building with anything else would train merges the loaded tokenizer then applies differently.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + TINY_MERGES,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    # Added after training so that, as in Qwen, the special tokens get the last ids.
    tok.add_special_tokens([ENDOFTEXT, IM_START, IM_END])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="left",
        chat_template=CHATML_TEMPLATE,
        model_max_length=512,
    )


def build_tiny(out_dir: Path) -> None:
    """Write a random 2-layer Qwen2 (hidden 32) and its byte-level tokenizer in transformers' format."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _tiny_tokenizer()
    eot, im_end = tokenizer.convert_tokens_to_ids([ENDOFTEXT, IM_END])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        # Far above Qwen's 0.02: at 0.02 a 2-layer model greedily repeats one token whatever the
        # prompt, which would hide padding or batching bugs; at 0.3 continuations depend on the prompt.
        initializer_range=0.3,
        bos_token_id=eot,
        eos_token_id=im_end,
        pad_token_id=eot,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config)
    # Same stop/pad convention as Qwen2.5-Instruct's generation_config.json.
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def load(source: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> ChatLM:
    """Load through ``AutoModelForCausalLM.from_pretrained(use_safetensors=True)`` and ``AutoTokenizer``.

    ``dtype=None`` keeps the checkpoint's own dtype (bfloat16 for Qwen2.5, float32 for the tiny model).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    refuse_pickle_only_dir(source, "llm")
    tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, dtype=dtype or "auto")
    model.to(device).eval()
    return ChatLM(model=model, tokenizer=tokenizer, name=source, device=device)


def build_shape(device: str = "cpu", dtype: torch.dtype | None = None, variant: str | None = None) -> ChatLM:
    """Qwen2.5-1.5B's architecture at random init (``core.zoo.shapes.QWEN25_1_5B``) with the tiny
    byte-level tokenizer: its ids are a subset of the model's vocabulary, which is all a timing needs."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from core.zoo.shapes import QWEN25_1_5B

    tokenizer = _tiny_tokenizer()
    eot, im_end = tokenizer.convert_tokens_to_ids([ENDOFTEXT, IM_END])
    with torch.device(device):
        model = Qwen2ForCausalLM(Qwen2Config(**QWEN25_1_5B, bos_token_id=eot, eos_token_id=im_end, pad_token_id=eot))
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot)
    if dtype is not None and device != "meta":
        model.to(dtype)
    return ChatLM(model=model.eval(), tokenizer=tokenizer, name="shape", device=device)


FAMILIES: list[Family] = [
    Family(
        name="llm",
        summary="Chat LLM that writes subject descriptions and prompts for S3 data (transformers)",
        library="transformers",
        production=PRODUCTION,
        build_tiny=build_tiny,
        load=load,
        build_shape=build_shape,
    )
]
