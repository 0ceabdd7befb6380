"""Stage 1, subjects and prompts: requests per subject id → LLM answers → validated, de-duplicated subjects.

Three backends answer the same requests (``llm_contract``): ``template`` (deterministic text, no
model), ``transformers`` (``models.llm`` through ``core.zoo``) and ``vllm`` (``datagen.vllm_backend``).
Parsing and de-duplication are shared. De-duplication needs every answer, so this stage ends in a
barrier; its result (``subjects.parquet``) is written once and reused by a resumed run, which is what
makes the image stages see exactly the same subjects again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from core.config import S3JediConfig
from core.config.datagen import SubjectsSection
from core.llm_json import ChatWriter
from datagen.categories import CategoryReject, NoCategoriesError, choose, clean_categories, read_categories, subject_ids
from datagen.llm_contract import HINTS, SYSTEM, InvalidAnswer, dedup_key, parse_answer, user_prompt
from datagen.rows import Reject, error_details
from datagen.seeds import derive_seed, rng
from datagen.stage import Stage

NAME = "subjects"

_COLOURS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "teal", "brown", "grey")
_MATERIALS = ("ceramic", "wooden", "metal", "plastic", "glass", "leather", "woven", "painted", "stone", "fabric")
_DETAILS = (
    "a floral pattern",
    "gold trim",
    "a striped band",
    "polka dots",
    "a matte finish",
    "a glossy finish",
    "a small star emblem",
    "a carved handle",
    "rounded edges",
    "a checkered pattern",
)
_SCENES = (
    "on a wooden kitchen table",
    "on a sandy beach at sunset",
    "on a snowy mountain path",
    "in a sunlit living room",
    "on a park bench",
    "on a shelf in a library",
    "on a rock by a lake",
    "on a city sidewalk at night",
    "in a flower garden",
    "on a marble countertop",
    "in a forest clearing",
    "on a picnic blanket",
)


@dataclass(frozen=True)
class Subject:
    subject_id: str
    category: str
    subject: str
    scenes: list[str]
    seed: int


def requests(cfg: S3JediConfig) -> tuple[list[dict], list[CategoryReject]]:
    """One request per subject id: ``subject_id, category, seed, hint, system, prompt``.

    Raises ``NoCategoriesError`` when nothing usable is configured (the run stops before any model loads).
    """
    sub = cfg.datagen.subjects
    raw, source = read_categories(sub)
    categories, rejects = clean_categories(raw)
    if not categories:
        reasons = ", ".join(sorted({r.reason for r in rejects})) or "no lines"
        raise NoCategoriesError(f"datagen.subjects: no usable category in {source} ({len(raw)} entries; {reasons})")
    rows = []
    for category in choose(categories, sub.num_categories, cfg.seed):
        for subject_id in subject_ids(category, sub.subjects_per_category):
            seed = derive_seed(cfg.seed, subject_id)
            hint = HINTS[int(rng(derive_seed(seed, "hint")).integers(len(HINTS)))]
            rows.append(
                {
                    "subject_id": subject_id,
                    "category": category,
                    "seed": seed,
                    "hint": hint,
                    "system": SYSTEM,
                    "prompt": user_prompt(category, hint, sub),
                }
            )
    return rows, rejects


def template_answer(request: dict, cfg: SubjectsSection) -> str:
    """A valid answer built from word lists, drawn with the request's seed (no model)."""
    r = rng(derive_seed(request["seed"], "template"))
    colour, material, detail = (str(r.choice(words)) for words in (_COLOURS, _MATERIALS, _DETAILS))
    scenes = [str(s) for s in r.choice(_SCENES, size=min(cfg.num_scenes, len(_SCENES)), replace=False)]
    return json.dumps({"subject": f"a {colour} {material} {request['category']} with {detail}", "scenes": scenes})


class TransformersWriter(ChatWriter):
    """Answers with a local chat model (``models.llm``), batched when greedy (``core.llm_json.ChatWriter``)."""

    def __init__(self, llm, cfg: SubjectsSection):
        super().__init__(llm, SYSTEM, cfg.max_new_tokens, cfg.temperature)


def parse(request: dict, answer: str | None, error: str | None, cfg: SubjectsSection) -> dict:
    """A request with its answer → ``subject``/``scenes``, or ``reason``/``details`` ("" when valid).

    Never raises; every field is a plain string (scenes a list) so rows of any outcome share one schema."""
    out = {k: request[k] for k in ("subject_id", "category", "seed")}
    out.update(answer=answer or "", subject="", scenes=[], reason="", details="")
    if error:
        out.update(reason="error", details=error)
        return out
    try:
        subject, scenes = parse_answer(answer, request["category"], cfg)
    except InvalidAnswer as exc:
        out.update(reason=exc.reason, details=exc.details)
    else:
        out.update(subject=subject, scenes=scenes)
    return out


def select(parsed: list[dict], order: list[str]) -> tuple[list[Subject], list[tuple[str, Reject]]]:
    """Valid answers in request order, the first of each duplicate kept; everything else as rejects."""
    by_id = {p["subject_id"]: p for p in parsed}
    missing = [sid for sid in order if sid not in by_id]
    if missing:
        raise RuntimeError(f"subjects: {len(missing)} requests came back without an answer (first: {missing[0]})")
    subjects: list[Subject] = []
    rejects: list[tuple[str, Reject]] = []
    first_of: dict[str, str] = {}
    for sid in order:
        p = by_id[sid]
        if p["reason"]:
            rejects.append((sid, Reject(NAME, p["reason"], p["details"])))
            continue
        key = dedup_key(p["subject"])
        if key in first_of:
            rejects.append((sid, Reject(NAME, "duplicate", f"{p['subject']!r} duplicates {first_of[key]}")))
            continue
        first_of[key] = sid
        subjects.append(Subject(sid, p["category"], p["subject"], list(p["scenes"]), int(p["seed"])))
    return subjects, rejects


# -- batch adapters (what the Ray Data operators of ray_stages call) ------------------------------

ANSWER_SCHEMA = pa.schema(
    [
        ("subject_id", pa.string()),
        ("category", pa.string()),
        ("seed", pa.int64()),
        ("answer", pa.string()),
        ("error", pa.string()),
    ]
)


def answer_rows(batch: list[dict], answers: list[str | None], error: str | None) -> pa.Table:
    rows = [
        {"subject_id": r["subject_id"], "category": r["category"], "seed": r["seed"], "answer": a, "error": error}
        for r, a in zip(batch, answers, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=ANSWER_SCHEMA)


def template_answers(batch: pa.Table, cfg: SubjectsSection) -> pa.Table:
    rows = batch.to_pylist()
    try:
        return answer_rows(rows, [template_answer(r, cfg) for r in rows], None)
    except Exception as exc:
        return answer_rows(rows, [None] * len(rows), error_details(exc))


def parse_row(row: dict, cfg: SubjectsSection) -> dict:
    """Any backend's answer row (vLLM error rows included) → one flat row; scenes as JSON text so
    every row has the same Arrow types whatever its outcome."""
    answer = row.get("answer", row.get("generated_text"))
    error = row.get("error") or row.get("__inference_error__") or None
    parsed = parse(row, answer, error, cfg)
    parsed["scenes"] = json.dumps(parsed["scenes"])
    return parsed


STAGE = Stage(NAME, version="1", families=("llm",), section=SubjectsSection)
