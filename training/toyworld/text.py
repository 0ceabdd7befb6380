"""ToyWorld's text side: a small CLIP tokenizer with one token per world word, and its text encoder.

The project's tiny zoo uses the real 49,408-token CLIP BPE, whose embedding table alone is 6 MB at
width 32: too heavy for checkpoints that ship in the repository, and pointless for a world of ~30
words. This tokenizer is a real ``CLIPTokenizer`` (same normaliser, pre-tokeniser and special tokens,
saved and loaded by transformers unchanged) whose vocabulary is the 256 byte symbols, their
end-of-word forms and a merge chain per world word, so every world word is one token and any other
text still encodes (byte by byte). Prompts are short, so the context is ``CONTEXT_LENGTH`` tokens
instead of 77, which keeps cross-attention cheap.

The text encoder is a randomly initialised, frozen ``CLIPTextModel``: distinct tokens give distinct,
well-separated states, and the UNet learns to read them (measured: the base model draws the named
scene, colour and shape, see docs/toyworld.md).
"""

from __future__ import annotations

from pathlib import Path

from core.zoo.clip_bpe import BOS, EOS

CONTEXT_LENGTH = 16


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values."""
    from open_clip.tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte symbols, their ``</w>`` forms, one left-to-right merge chain per word, then BOS and EOS."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in words:
        if not word.isascii() or not word.isalpha() or word != word.lower():
            raise ValueError(f"words: {word!r} must be a lower-case ASCII word")
        parts = [*word[:-1], word[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            pair = (left, right)
            left = left + right
            if pair not in merges:
                merges.append(pair)
                tokens.append(left)
    tokens += [BOS, EOS]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def build_tokenizer(words: list[str]):
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges(words)
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token=EOS, model_max_length=CONTEXT_LENGTH)


def build_text_encoder(tokenizer, width: int, layers: int, heads: int):
    """A randomly initialised ``CLIPTextModel`` sized for ``tokenizer`` (seed the global RNG first)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=CONTEXT_LENGTH,
        projection_dim=width,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def save_tokenizer(tokenizer, out_dir: Path) -> None:
    tokenizer.save_pretrained(str(out_dir))
