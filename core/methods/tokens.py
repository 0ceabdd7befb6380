"""Learned tokens (textual inversion): new rows in the text encoder's embedding table.

Only the new rows may change. The optimizer sees the whole table (the text encoder's embedding is one
parameter), so after every backward pass the other rows' gradients are zeroed and after every step
their values are copied back from a frozen copy (weight decay would otherwise move them): they stay
bit-identical, which a test checks. Multi-vector tokens follow diffusers' naming (``<t>``, ``<t>_1``,
...), so ``load_textual_inversion`` of an ``(n, dim)`` embedding recreates exactly the trained tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.config.finetune import NewTokenSection


@dataclass
class LearnedToken:
    token: str
    names: list[str]
    ids: torch.Tensor

    @property
    def text(self) -> str:
        """What stands for the token in a prompt (every vector's name)."""
        return " ".join(self.names)


def add_token(tokenizer, text_encoder: torch.nn.Module, spec: NewTokenSection, class_word: str) -> LearnedToken:
    """Add ``spec.token`` (and its extra vectors) and start every new row at the initializer word's embedding."""
    names = [spec.token] + [f"{spec.token}_{i}" for i in range(1, spec.num_vectors)]
    # A string the tokenizer already reads as one token is a word (``dog``): adding it would shadow
    # that word in every prompt, the class word included.
    if any(len(tokenizer(n, add_special_tokens=False).input_ids) == 1 for n in names) or tokenizer.add_tokens(
        names
    ) != len(names):
        raise ValueError(f"token: {spec.token!r} is already in the tokenizer's vocabulary; choose a new token")
    initializer = spec.initializer.replace("{1}", class_word)
    init_ids = tokenizer(initializer, add_special_tokens=False).input_ids
    if not init_ids:
        raise ValueError(f"token.initializer: {initializer!r} encodes to no token")
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(names))
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[ids] = weight[torch.tensor(init_ids)].mean(dim=0).to(weight.dtype)
    return LearnedToken(token=spec.token, names=names, ids=ids.to(weight.device))


def find_token(tokenizer, token: str, device) -> LearnedToken:
    """A token already loaded into a pipeline (``load_textual_inversion``), with its extra vectors."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise ValueError(f"tokens: {token!r} is not in the tokenizer")
    names = [token]
    while f"{token}_{len(names)}" in vocab:
        names.append(f"{token}_{len(names)}")
    return LearnedToken(token=token, names=names, ids=torch.tensor([vocab[n] for n in names], device=device))


class RowGuard:
    """Keeps every embedding row except ``ids`` exactly as it was when the guard was made.

    Whole-table ``zero_``/``copy_`` with the few trained rows put back is much faster than masked
    indexing over the other rows (SD's table has 49,408 rows)."""

    def __init__(self, weight: torch.nn.Parameter, ids: torch.Tensor):
        self.weight, self.ids = weight, ids
        self.frozen = weight.detach().clone()

    def mask_grad(self) -> None:
        grad = self.weight.grad
        if grad is not None:
            rows = grad[self.ids].clone()
            grad.zero_()
            grad[self.ids] = rows

    @torch.no_grad()
    def restore(self) -> None:
        rows = self.weight[self.ids].clone()
        self.weight.copy_(self.frozen)
        self.weight[self.ids] = rows


def row_norms(weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return weight.detach()[ids].norm(dim=-1)


@torch.no_grad()
def rescale_rows(weight: torch.Tensor, ids: torch.Tensor, norms: torch.Tensor) -> None:
    """Give the rows ``ids`` the given norms, keeping their directions (CoRe's norm rescaling)."""
    rows = weight[ids]
    weight[ids] = rows * (norms / rows.norm(dim=-1)).unsqueeze(-1).to(rows.dtype)
