"""What a run leaves on storage (local or URI).

Per class word, ``<run>/prompts/<class>.json``: its mining prompts as the LLM (or the template
backend) wrote them, written once and read by every later round and resume.

Per subject and round, in ``<run>/mining/<subject>/round-<r>/``:

- ``prompts.parquet``: the mining prompts (template with ``{0} {1}``, token-free text), who wrote them
  (``source``: the backend, or ``template-fallback`` with the LLM's answer and the reason);
- ``samples.parquet``: every mined sample — teacher id, prompt, seed, the PNG, every score of the
  metric suite, the seconds spent generating and scoring it, and ``gold``;
- ``gold.parquet``: the gold samples as the student reads them (``image``, ``prompt``: the mining
  prompt, or the instance prompt in §4.3's ablation) plus their keys;
- ``summary.json``, written last: counts (the yield), the top-set size and its lowest scores, the
  conflict rate with its thresholds, timings. A subject's round is done when its summary exists; a
  rerun of the run skips it.

Every file is written atomically (``core.s3.writer``), so a killed run leaves either a file or none.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from core import storage
from core.s3.writer import write_bytes, write_table
from training.selfdistill.gold import GoldSelection
from training.selfdistill.prompts import MinedPrompt

SUMMARY = "summary.json"


@dataclass
class RoundSummary:
    subject: str
    round: int
    teacher: str
    prompts_source: str
    prompts_reason: str
    samples: int
    gold: int  # the yield (paper 000 §4.1: 17 per subject from 1,250 samples)
    keep: int  # ceil(k% · samples): the size of each score's top set
    image_threshold: float | None  # lowest image score in its top set; None: no sample had the score
    text_threshold: float | None
    conflict_rate: float  # §4: share of samples below either minimum
    conflicts: int
    conflict_minimum: dict[str, float]  # metric -> the minimum used
    seconds: dict[str, float] = field(default_factory=dict)
    config_hash: str = ""


def round_dir(root: str, subject: str, round_: int) -> str:
    return storage.join(root, "mining", subject, f"round-{round_}")


def gold_path(root: str, subject: str, round_: int) -> str:
    return storage.join(round_dir(root, subject, round_), "gold.parquet")


def _read_json(full: str) -> dict | None:
    if not storage.exists(full):
        return None
    fs, path = storage.filesystem(full)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def read_summary(root: str, subject: str, round_: int) -> RoundSummary | None:
    found = _read_json(storage.join(round_dir(root, subject, round_), SUMMARY))
    return None if found is None else RoundSummary(**found)


def class_prompts_path(root: str, class_word: str) -> str:
    return storage.join(root, "prompts", re.sub(r"[^A-Za-z0-9]+", "-", class_word).strip("-") + ".json")


def write_class_prompts(root: str, resolved: dict) -> dict:
    """Keep a class's resolved prompts (``prompts.resolve``'s row) for the rest of the run."""
    row = {**resolved, "prompts": [asdict(p) for p in resolved["prompts"]]}
    write_bytes(json.dumps(row, indent=1).encode(), class_prompts_path(root, resolved["class_word"]))
    return resolved


def read_class_prompts(root: str, class_word: str) -> dict | None:
    row = _read_json(class_prompts_path(root, class_word))
    return None if row is None else {**row, "prompts": [MinedPrompt(**p) for p in row["prompts"]]}


def prompts_table(resolved: dict, subject: str, round_: int, teacher: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "subject": subject,
                "round": round_,
                "teacher": teacher,
                "class_word": resolved["class_word"],
                "prompt_id": p.prompt_id,
                "template": p.template,
                "text": p.text,
                "source": resolved["source"],
                "answer": resolved["answer"],
                "reason": resolved["reason"],
                "details": resolved["details"],
            }
            for p in resolved["prompts"]
        ]
    )


def write_round(
    root: str,
    resolved: dict,
    samples: pa.Table,
    selection: GoldSelection,
    summary: RoundSummary,
    gold_prompt: str | None = None,
) -> RoundSummary:
    """Write a subject's round (prompts, scored samples with the gold and conflict flags, gold samples,
    summary last). ``gold_prompt``: one training prompt for every gold sample instead of its mining
    prompt (§4.3's "a [V] [class noun]" ablation)."""
    where = round_dir(root, summary.subject, summary.round)
    write_table(
        prompts_table(resolved, summary.subject, summary.round, summary.teacher), storage.join(where, "prompts.parquet")
    )
    samples = samples.append_column("gold", pa.array(selection.gold))
    samples = samples.append_column("conflicted", pa.array(selection.conflicted))
    meta = {b"s3jedi.selfdistill": json.dumps(asdict(summary)).encode()}
    write_table(samples.replace_schema_metadata(meta), storage.join(where, "samples.parquet"))
    gold = samples.filter(pc.field("gold")).select(["image", "template", "prompt_id", "sample", "seed", "teacher"])
    gold = gold.rename_columns(["image", "prompt", "prompt_id", "sample", "seed", "teacher"])
    if gold_prompt is not None:
        gold = gold.set_column(1, "prompt", pa.array([gold_prompt] * gold.num_rows, pa.string()))
    write_table(gold, gold_path(root, summary.subject, summary.round))
    write_bytes(json.dumps(asdict(summary), indent=1).encode(), storage.join(where, SUMMARY))
    return summary
