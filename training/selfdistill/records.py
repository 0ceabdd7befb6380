"""What a round leaves per subject, in ``<run>/mining/<subject>/round-<r>/`` (local or URI):

- ``prompts.parquet``: the mining prompts (template with ``{0} {1}``, token-free text), who wrote them
  (``source``: the backend, or ``template-fallback`` with the LLM's answer and the reason);
- ``samples.parquet``: every mined sample — teacher id, prompt, seed, the PNG, every score of the
  metric suite, the seconds spent generating and scoring it, and ``gold``;
- ``gold.parquet``: the gold samples as the student reads them (``image``, ``prompt``) plus their keys;
- ``summary.json``, written last: counts, thresholds, conflict rate, timings. A subject's round is done
  when its summary exists; a rerun of the run skips it.

Every file is written atomically (``core.s3.writer``), so a killed run leaves either a file or none.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from core import storage
from core.s3.writer import write_bytes, write_table
from training.selfdistill.gold import GoldSelection

SUMMARY = "summary.json"


@dataclass
class RoundSummary:
    subject: str
    round: int
    teacher: str
    prompts_source: str
    prompts_reason: str
    samples: int
    gold: int
    image_threshold: float | None  # None: no sample had the score
    text_threshold: float | None
    conflict_rate: float
    conflicted_prompts: list[int]
    seconds: dict[str, float] = field(default_factory=dict)
    config_hash: str = ""


def round_dir(root: str, subject: str, round_: int) -> str:
    return storage.join(root, "mining", subject, f"round-{round_}")


def gold_path(root: str, subject: str, round_: int) -> str:
    return storage.join(round_dir(root, subject, round_), "gold.parquet")


def read_summary(root: str, subject: str, round_: int) -> RoundSummary | None:
    full = storage.join(round_dir(root, subject, round_), SUMMARY)
    if not storage.exists(full):
        return None
    fs, path = storage.filesystem(full)
    with fs.open_input_stream(path) as f:
        return RoundSummary(**json.loads(f.read()))


def prompts_table(resolved: dict, teacher: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "subject": resolved["subject"],
                "round": resolved["round"],
                "teacher": teacher,
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
    root: str, resolved: dict, samples: pa.Table, selection: GoldSelection, summary: RoundSummary
) -> RoundSummary:
    """Write a subject's round (prompts, scored samples with the gold flag, gold samples, summary last)."""
    where = round_dir(root, summary.subject, summary.round)
    write_table(prompts_table(resolved, summary.teacher), storage.join(where, "prompts.parquet"))
    samples = samples.append_column("gold", pa.array(selection.gold))
    meta = {b"s3jedi.selfdistill": json.dumps(asdict(summary)).encode()}
    write_table(samples.replace_schema_metadata(meta), storage.join(where, "samples.parquet"))
    gold = samples.filter(pc.field("gold")).select(["image", "template", "prompt_id", "sample", "seed", "teacher"])
    write_table(
        gold.rename_columns(["image", "prompt", "prompt_id", "sample", "seed", "teacher"]),
        gold_path(root, summary.subject, summary.round),
    )
    write_bytes(json.dumps(asdict(summary), indent=1).encode(), storage.join(where, SUMMARY))
    return summary
