"""The fine-tuned subject store: the one on-disk format for subjects learned by fine-tuning.

The fine-tuning trainers *write* subjects in this format, serving loads them per request
(``/v1/generate`` with ``subject_id``) and evaluation *reads* them, so the format is defined here,
once, and versioned.

Layout
======

A **store** is a directory, or a pyarrow filesystem URI (``s3://bucket/subjects``,
``gs://…``, ``file:///…``), holding one directory per subject id::

    <store>/
      my-dog/
        card.json                          # SubjectCard, written LAST
        pytorch_lora_weights.safetensors   # weights.lora: diffusers LoRA (save_lora_weights)
        learned_embeds.safetensors         # weights.embeddings: {token: (n_vectors, dim) or (dim,)}
        instance_latents.safetensors       # weights.instance_latents: {"mean", "std"}: (N, C, h, w) VAE
                                           #   posterior of the training photos (CoRe's test-time optimization)
        unet/                              # weights.unet: a diffusers UNet2DConditionModel directory
          config.json
          diffusion_pytorch_model.safetensors
        text_encoder/                      # weights.text_encoder: a transformers text encoder directory
          config.json                      #   (full DreamBooth with text-encoder training)
          model.safetensors

Only the files named in the card's ``weights`` are required; every one of them is safetensors
(pickles are never read). ``card.json`` is written after every weight file, so a directory without
a card is an upload in progress and is invisible to readers.

The card (``SubjectCard``, format version 1)
--------------------------------------------
``subject_id``
    the directory name; lower-case letters, digits, ``-`` and ``_``, starting with a letter or digit,
    at most 64 characters (``SUBJECT_ID_PATTERN``). Ids arrive in HTTP requests, so they can never
    contain ``/``, ``.`` or anything else that could walk out of the store.
``method``
    a registered method (``core.methods``: ``dreambooth``, ``ti``, ``two-stage``, ``core``,
    ``selfdistill``, ``multiconcept``, or one a plugin registers); drawing applies its inference step.
``base_model``
    the ``models.sd`` reference the subject was trained on (``tiny``, a hub id or a path); weights
    only make sense on that base.
``tokens``
    the identifier token(s) that name the subject in prompts (``["<sks>"]``; several for
    multi-concept). For ``embeddings`` weights, each key of ``learned_embeds.safetensors`` is one of
    these tokens.
``class_word``
    the subject's class noun (``dog``), as in the DreamBooth benchmark.
``prompt_template``
    the instance prompt used in training, with ``{0}`` standing for the token(s) and ``{1}`` for the
    class word — the DreamBooth benchmark's own placeholder convention (``"a photo of {0} {1}"``).
    ``render_prompt`` fills any prompt written with these placeholders.
``weights``
    which of ``lora``/``embeddings``/``unet``/``text_encoder``/``instance_latents`` are present; the file
    names are fixed by the format. ``instance_latents`` is not a weight ``apply_subject`` loads: a method's
    inference step reads it.
``steps``, ``metrics``, ``created``
    training steps, final metrics (name → number), creation time (UTC).

Applying a subject
------------------
``apply_subject(pipe, subject_dir)`` loads the weights into a Stable Diffusion pipeline with plain
diffusers APIs (``load_lora_weights``, ``load_textual_inversion``,
``UNet2DConditionModel.from_pretrained``). It modifies ``pipe``: callers that keep a base pipeline
apply subjects to a separately loaded copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FORMAT_VERSION = 1
CARD_NAME = "card.json"
LORA_FILE = "pytorch_lora_weights.safetensors"
EMBEDDINGS_FILE = "learned_embeds.safetensors"
INSTANCE_LATENTS_FILE = "instance_latents.safetensors"
UNET_DIR = "unet"
TEXT_ENCODER_DIR = "text_encoder"
SUBJECT_ID_MAX_LENGTH = 64
SUBJECT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_SUBJECT_ID_RE = re.compile(SUBJECT_ID_PATTERN)


class SubjectNotFoundError(LookupError):
    """No (complete) subject with this id in the store."""


def validate_subject_id(subject_id: object) -> str:
    """Return ``subject_id`` if it is a safe directory name, else raise ``ValueError`` naming it."""
    if not isinstance(subject_id, str):
        raise ValueError(f"subject_id: must be a string, got {type(subject_id).__name__}")
    if len(subject_id) > SUBJECT_ID_MAX_LENGTH:
        raise ValueError(f"subject_id: {len(subject_id)} characters, at most {SUBJECT_ID_MAX_LENGTH} allowed")
    if not _SUBJECT_ID_RE.fullmatch(subject_id):
        raise ValueError(
            f"subject_id: {subject_id!r} must match {SUBJECT_ID_PATTERN} "
            "(lower-case letters, digits, '-' and '_', starting with a letter or digit)"
        )
    return subject_id


def make_subject_id(template: str, subject: str, method: str) -> str:
    """An output id from a template (``{subject}-{method}``): filled, lower-cased, characters outside
    ``[a-z0-9_-]`` become ``-``."""
    raw = template.replace("{subject}", subject).replace("{method}", method).lower()
    return validate_subject_id(re.sub(r"[^a-z0-9_-]+", "-", raw).strip("-_")[:SUBJECT_ID_MAX_LENGTH])


class SubjectWeights(BaseModel):
    """Which weight files a subject has; the names are fixed by the format (never paths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora: Literal["pytorch_lora_weights.safetensors"] | None = Field(
        None, description="diffusers LoRA weights (StableDiffusionPipeline.save_lora_weights)"
    )
    embeddings: Literal["learned_embeds.safetensors"] | None = Field(
        None, description="textual-inversion embeddings, one key per token"
    )
    unet: Literal["unet"] | None = Field(None, description="a full diffusers UNet2DConditionModel directory")
    text_encoder: Literal["text_encoder"] | None = Field(
        None, description="a full transformers text encoder directory (same class as the base model's)"
    )
    instance_latents: Literal["instance_latents.safetensors"] | None = Field(
        None, description="VAE posterior (mean, std) of the training photos, for a method's inference step"
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> SubjectWeights:
        if not set(self.present()) - {"instance_latents"}:
            raise ValueError("weights: at least one of lora, embeddings, unet, text_encoder is required")
        return self

    def present(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SubjectCard(BaseModel):
    """``card.json``: what a subject is and how to load it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = FORMAT_VERSION
    subject_id: str
    method: str
    base_model: str = Field(..., min_length=1, description="models.sd reference the subject was trained on")
    tokens: list[str] = Field(..., min_length=1, max_length=16, description='identifier tokens, e.g. ["<sks>"]')
    class_word: str = Field(..., min_length=1, max_length=64)
    prompt_template: str = Field(..., max_length=500, description='instance prompt, e.g. "a photo of {0} {1}"')
    weights: SubjectWeights
    steps: int = Field(0, ge=0, description="training steps")
    metrics: dict[str, float] = Field(default_factory=dict)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("subject_id")
    @classmethod
    def _id(cls, value: str) -> str:
        return validate_subject_id(value)

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        from core.methods import get

        return get(value).name

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: list[str]) -> list[str]:
        for token in value:
            if not token or len(token) > 32 or any(ch.isspace() for ch in token):
                raise ValueError(f"tokens: {token!r} must be 1..32 characters without whitespace")
        if len(set(value)) != len(value):
            raise ValueError(f"tokens: duplicates in {value}")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{0}" not in value:
            raise ValueError(f"prompt_template: {value!r} must contain {{0}} where the subject token(s) go")
        return value

    def render_prompt(self, prompt: str) -> str:
        """Fill ``{0}`` (token(s)) and ``{1}`` (class word). Plain replacement, never ``str.format``:
        prompts come from users and ``format`` would evaluate attribute lookups like ``{0.__class__}``."""
        return prompt.replace("{0}", " ".join(self.tokens)).replace("{1}", self.class_word)

    def instance_prompt(self) -> str:
        return self.render_prompt(self.prompt_template)


def write_card(subject_dir: Path, card: SubjectCard) -> Path:
    """Write ``card.json`` atomically, after checking that every weight it names is in ``subject_dir``.

    Call it last, once the weights are saved: readers take a directory without a card as incomplete.
    """
    subject_dir = Path(subject_dir)
    if subject_dir.name != card.subject_id:
        raise ValueError(f"subject_id: card says {card.subject_id!r} but the directory is named {subject_dir.name!r}")
    _check_weight_files(subject_dir, card)
    path = subject_dir / CARD_NAME
    tmp = subject_dir / f".{CARD_NAME}.tmp"
    tmp.write_text(card.model_dump_json(indent=1) + "\n")
    os.replace(tmp, path)
    return path


def parse_card(text: str | bytes, where: str) -> SubjectCard:
    try:
        return SubjectCard.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(card)"
        raise ValueError(f"{where}: {field}: {first['msg']}") from None


def read_card(subject_dir: Path) -> SubjectCard:
    """Read and validate ``subject_dir/card.json``; the weights it names must exist."""
    subject_dir = Path(subject_dir)
    path = subject_dir / CARD_NAME
    if not path.is_file():
        raise SubjectNotFoundError(f"subject_id: no subject at {subject_dir} (no {CARD_NAME})")
    card = parse_card(path.read_bytes(), str(path))
    if card.subject_id != subject_dir.name:
        raise ValueError(f"{path}: subject_id {card.subject_id!r} does not match the directory {subject_dir.name!r}")
    _check_weight_files(subject_dir, card)
    return card


def _check_weight_files(subject_dir: Path, card: SubjectCard) -> None:
    w = card.weights
    missing = [
        name for name in (w.lora, w.embeddings, w.instance_latents) if name and not (subject_dir / name).is_file()
    ]
    if w.unet and not (subject_dir / UNET_DIR / "diffusion_pytorch_model.safetensors").is_file():
        missing.append(f"{UNET_DIR}/diffusion_pytorch_model.safetensors")
    if w.text_encoder and not (subject_dir / TEXT_ENCODER_DIR / "model.safetensors").is_file():
        missing.append(f"{TEXT_ENCODER_DIR}/model.safetensors")
    if missing:
        raise ValueError(f"weights: {subject_dir} lacks {', '.join(missing)} named in its card")


def apply_subject(pipe: Any, subject_dir: Path) -> Any:
    """Load a subject's weights into ``pipe`` (a Stable Diffusion pipeline) and return it.

    Full UNet and text encoder first (they replace the modules the LoRA would attach to), then the
    learned token embeddings, then the LoRA. ``pipe`` is modified in place.
    """
    from diffusers import UNet2DConditionModel

    subject_dir = Path(subject_dir)
    card = read_card(subject_dir)
    weights = card.weights
    if weights.unet:
        unet = UNet2DConditionModel.from_pretrained(
            str(subject_dir / UNET_DIR), use_safetensors=True, dtype=pipe.unet.dtype
        )
        pipe.register_modules(unet=unet.to(pipe.unet.device))
    if weights.text_encoder:
        text_encoder = type(pipe.text_encoder).from_pretrained(
            str(subject_dir / TEXT_ENCODER_DIR), use_safetensors=True, dtype=pipe.text_encoder.dtype
        )
        pipe.register_modules(text_encoder=text_encoder.to(pipe.text_encoder.device))
    if weights.embeddings:
        _load_embeddings(pipe, subject_dir / EMBEDDINGS_FILE, card)
    if weights.lora:
        pipe.load_lora_weights(str(subject_dir), weight_name=LORA_FILE, adapter_name=card.subject_id)
    return pipe


def _load_embeddings(pipe: Any, path: Path, card: SubjectCard) -> None:
    """diffusers' learned_embeds format: ``{token: embedding}``. A single-token file goes straight to
    ``load_textual_inversion(path, token=...)``; several tokens (multi-concept) are passed as one
    state dict per token, which is how ``load_textual_inversion`` takes more than one."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    unknown = sorted(set(keys) - set(card.tokens))
    if not keys or unknown:
        raise ValueError(
            f"weights.embeddings: {path.name} has keys {keys}; expected one or more of the card's tokens {card.tokens}"
        )
    if len(keys) == 1:
        pipe.load_textual_inversion(str(path), token=keys[0])
        return
    from safetensors.torch import load_file

    state = load_file(str(path))
    pipe.load_textual_inversion([{k: state[k]} for k in keys], token=keys)


class SubjectStore:
    """A store of subjects at a local directory or a pyarrow filesystem URI.

    Remote subjects are copied into ``cache_dir`` before loading (diffusers reads local files); the
    copy is keyed by the card's digest, so a subject re-published under the same id is fetched again.
    """

    def __init__(self, root: str | Path, cache_dir: Path | None = None):
        from pyarrow import fs

        from core.storage import filesystem, resolve

        self.uri = resolve(root)
        self.fs, self.root = filesystem(root)
        self.local = isinstance(self.fs, fs.LocalFileSystem)
        self.cache_dir = cache_dir

    def _path(self, subject_id: str) -> str:
        return f"{self.root.rstrip('/')}/{validate_subject_id(subject_id)}"

    def ids(self) -> list[str]:
        """Ids of complete subjects (with a card), sorted."""
        from pyarrow import fs

        info = self.fs.get_file_info(self.root)
        if info.type == fs.FileType.NotFound:
            return []
        found = []
        for entry in self.fs.get_file_info(fs.FileSelector(self.root)):
            if entry.type != fs.FileType.Directory or not _SUBJECT_ID_RE.fullmatch(entry.base_name):
                continue
            if self.fs.get_file_info(f"{entry.path}/{CARD_NAME}").type == fs.FileType.File:
                found.append(entry.base_name)
        return sorted(found)

    def _card_bytes(self, subject_id: str) -> bytes:
        from pyarrow import fs

        path = f"{self._path(subject_id)}/{CARD_NAME}"
        if self.fs.get_file_info(path).type != fs.FileType.File:
            raise SubjectNotFoundError(f"subject_id: no subject {subject_id!r} in {self.uri}")
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def card(self, subject_id: str) -> SubjectCard:
        card = parse_card(self._card_bytes(subject_id), f"{self.uri}/{subject_id}/{CARD_NAME}")
        if card.subject_id != subject_id:
            raise ValueError(f"{self.uri}/{subject_id}: card names subject_id {card.subject_id!r}")
        return card

    def local_dir(self, subject_id: str) -> Path:
        """A local directory holding the subject, fetching it into the cache if the store is remote."""
        if self.local:
            path = Path(self._path(subject_id))
            self._card_bytes(subject_id)
            return path
        if self.cache_dir is None:
            raise ValueError(f"subjects store {self.uri} is remote: a cache_dir is required to load from it")
        from pyarrow import fs

        digest = hashlib.sha256(self._card_bytes(subject_id)).hexdigest()[:16]
        target = Path(self.cache_dir) / digest / subject_id
        if (target / CARD_NAME).is_file():
            return target
        staging = Path(self.cache_dir) / f".fetch-{digest}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / subject_id).mkdir(parents=True)
        try:
            fs.copy_files(
                self._path(subject_id),
                str(staging / subject_id),
                source_filesystem=self.fs,
                destination_filesystem=fs.LocalFileSystem(),
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(staging / subject_id, target)
            except OSError:
                if not (target / CARD_NAME).is_file():  # not merely another process finishing first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def publish(self, subject_dir: Path) -> str:
        """Copy a locally written subject into the store, weights first and the card last."""
        from pyarrow import fs

        subject_dir = Path(subject_dir)
        card = read_card(subject_dir)
        dest = self._path(card.subject_id)
        self.fs.create_dir(dest, recursive=True)
        local = fs.LocalFileSystem()
        for src in sorted(p for p in subject_dir.rglob("*") if p.is_file() and p.name != CARD_NAME):
            rel = src.relative_to(subject_dir)
            if any(part.startswith(".") for part in rel.parts):
                continue
            parent = dest if rel.parent == Path(".") else f"{dest}/{rel.parent.as_posix()}"
            self.fs.create_dir(parent, recursive=True)
            fs.copy_files(str(src), f"{dest}/{rel.as_posix()}", source_filesystem=local, destination_filesystem=self.fs)
        with self.fs.open_output_stream(f"{dest}/{CARD_NAME}") as out:
            out.write(json.dumps(card.model_dump(mode="json"), indent=1).encode() + b"\n")
        return dest
