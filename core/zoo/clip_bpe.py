"""The real CLIP BPE vocabulary, written as a Hugging Face ``CLIPTokenizer`` without a download.

open_clip ships OpenAI's ``bpe_simple_vocab_16e6.txt.gz``. Rebuilding ``vocab.json``/``merges.txt``
from it the way open_clip's ``SimpleTokenizer`` does gives the 49,408-token tokenizer that every
Stable Diffusion checkpoint uses, with identical ids. Tiny pipelines therefore tokenize prompts
exactly like production ones; only the embedding table behind the ids is random.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer(out_dir: Path, pad_token: str = EOS) -> None:
    """Save a ``CLIPTokenizer`` (``save_pretrained`` layout) into ``out_dir``.

    ``pad_token`` follows the checkpoints: SD1.x/SDXL ``tokenizer`` pads with ``<|endoftext|>``,
    SDXL's ``tokenizer_2`` pads with ``!``.
    """
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    raw = out_dir.parent / f".{out_dir.name}.raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), pad_token=pad_token, model_max_length=77)
    tok.save_pretrained(str(out_dir))
    for f in raw.iterdir():
        f.unlink()
    raw.rmdir()
