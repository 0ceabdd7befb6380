"""A tiny chat model that answers the subject contract for known prompts, for the transformers backend.

The zoo's tiny LLM is random and never writes valid JSON, so on its own it can only exercise the reject
path. Fine-tuning it for a few dozen steps to reproduce one valid answer per known prompt gives a real
checkpoint, loaded through ``core.zoo`` like any other, that follows the contract for those prompts and
still writes noise for the others: both outcomes of the backend in one run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core import zoo
from datagen.llm_contract import SYSTEM


def train_contract_llm(requests: list[dict], answers: dict[str, str], out_dir: Path, max_steps: int = 400) -> Path:
    """Fine-tune the tiny LLM until greedy decoding returns ``answers[subject_id]`` for those requests."""
    lm = zoo.load("llm", "tiny")
    tok, model = lm.tokenizer, lm.model
    chosen = [r for r in requests if r["subject_id"] in answers]
    prompts = [r["prompt"] for r in chosen]
    targets = [answers[r["subject_id"]] for r in chosen]
    ids, labels = [], []
    for prompt, answer in zip(prompts, targets, strict=True):
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        p = tok(text, add_special_tokens=False)["input_ids"]
        a = tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(map(len, ids))
    pad = tok.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    label_ids = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    torch.manual_seed(0)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(1, max_steps + 1):
        model.train()
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_ids).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        if loss.item() < 0.02 and step % 10 == 0:  # greedy decoding is exact well before the loss is 0
            model.eval()
            if lm.generate(prompts, system=SYSTEM, max_new_tokens=160) == targets:
                break
    else:
        raise AssertionError(f"the tiny LLM did not learn the answers in {max_steps} steps (loss {loss.item():.4f})")
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir
