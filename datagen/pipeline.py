"""One S3 build, start to finish: subjects (barrier) → image stages (streaming, per shard) → summary.

``build(cfg, out)`` is what ``s3jedi datagen`` and ``python -m datagen`` (under ``ray job submit``)
run. It refuses bad input before any model loads (no categories, missing models, GPUs requested on a
machine without any, an output directory started with other settings), resumes from whatever an
earlier run of the same settings completed and still verifies (damaged shards are rebuilt; see
``output``), ends with the summary and the dataset card, and stops with ``StageFailedError`` when a
stage fails on every row that reaches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from core import storage, zoo
from core.config import S3JediConfig, config_hash, save_config
from core.logs import get_logger
from core.ray_runtime import init_ray
from core.s3 import read_rejects, write_bytes
from datagen import ray_stages, stages, subjects
from datagen.output import OutputDir, check_shard, compact_shard, reject_rows, shard_name
from datagen.progress import Display, shard_done
from datagen.rows import WorkRow, to_table
from datagen.summary import StageFailedError, Tally, stage_table, steady_rate, summary_dict

log = get_logger("datagen")

RUN_ONLY = {
    "resources",
    "execution",
    "fused",
    "progress",
    "abort_after_errors",
    "writer",
    "concurrency",
    "batch_size",
    "accelerator_type",
}
"""Settings that change how a build runs, not what it makes: a resumed run may change them."""


@dataclass
class BuildResult:
    root: str
    summary: dict
    resumed: bool


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in RUN_ONLY}
    return value


def data_settings(cfg: S3JediConfig) -> dict[str, Any]:
    """Everything that decides the data: the seed, the models and the datagen settings minus resources."""
    return {"seed": cfg.seed, "models": model_refs(cfg), "datagen": _strip(cfg.datagen.model_dump(mode="json"))}


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def model_refs(cfg: S3JediConfig) -> dict[str, str]:
    """``models.<family>`` of every family the stages declare, in pipeline order (``llm`` is "template" for
    the template backend)."""
    refs = {f: getattr(cfg.models, f) for s in stages.pipeline() for f in s.families}
    if cfg.datagen.subjects.backend == "template":
        refs["llm"] = "template"
    return refs


def provenance(cfg: S3JediConfig, fp: str) -> dict[str, Any]:
    return {
        "config_hash": config_hash(cfg),
        "fingerprint": fp,
        "models": model_refs(cfg),
        "stage_versions": stages.versions(),
    }


def check_models(cfg: S3JediConfig) -> None:
    """Every model the build will load exists (tiny built, local path present): fail now, not in a worker."""
    for family in stages.model_families(cfg):
        zoo.resolve(family, getattr(cfg.models, family), cfg.home)


def check_gpus(cfg: S3JediConfig) -> None:
    """GPU stages on a cluster without GPUs would wait forever: refuse on a local Ray, warn on a remote
    one (an autoscaler may still add GPU nodes)."""
    import ray

    if cfg.datagen.execution == "fused":
        wanted = {"datagen.fused.num_gpus": cfg.datagen.fused.num_gpus}
    else:
        wanted = {f"datagen.{s.name}.resources.num_gpus": s.resources(cfg).num_gpus for s in stages.image_stages()}
    if cfg.datagen.subjects.backend == "transformers":
        wanted["datagen.subjects.resources.num_gpus"] = cfg.datagen.subjects.resources.num_gpus
    asking = [f"{k}={v}" for k, v in wanted.items() if v > 0]
    if cfg.datagen.subjects.backend == "vllm":
        asking.append("datagen.subjects.backend=vllm")
    if not asking or ray.cluster_resources().get("GPU", 0) > 0:
        return
    message = f"{asking[0]} but the Ray cluster has no GPU"
    if os.environ.get("RAY_ADDRESS") or cfg.ray.address:
        log.warning(message + "; waiting for the autoscaler to add one")
        return
    raise ValueError(message + " (use the tiny profile on CPU, or set the stages' num_gpus to 0)")


def _save_config(cfg: S3JediConfig, root: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        saved = save_config(cfg, Path(tmp))
        write_bytes(saved.read_bytes(), storage.join(root, saved.name))


def _run_subjects(
    cfg: S3JediConfig, requests: list[dict], output: OutputDir, category_rejects: list
) -> tuple[list[dict], dict]:
    import ray.data

    start = time.perf_counter()
    parsed = ray_stages.subject_pipeline(ray.data.from_items(requests), cfg).take_all()
    for p in parsed:
        p["scenes"] = json.loads(p["scenes"])
    chosen, rejects = subjects.select(parsed, [r["subject_id"] for r in requests])
    errors = [p for p in parsed if p["reason"] == "error"]
    stats = {
        "requested": len(requests),
        "accepted": len(chosen),
        "errors": len(errors),
        "seconds": time.perf_counter() - start,
        "first_error": errors[0]["details"] if errors else None,
    }
    rows = [
        {
            "row_id": f"category:{c.category}",
            "stage": subjects.NAME,
            "reason": c.reason,
            "details": c.details,
            "item": None,
        }
        for c in category_rejects
    ]
    for sid, rej in rejects:
        rows.extend(reject_rows(sid, [rej]))
    output.write_rejects(rows, subjects.NAME)
    size = cfg.datagen.shard_size
    table = [
        {
            "subject_id": s.subject_id,
            "shard": i // size,
            "category": s.category,
            "subject": s.subject,
            "scenes": s.scenes,
            "seed": s.seed,
        }
        for i, s in enumerate(chosen)
    ]
    if chosen:  # an all-rejected stage 1 is not kept: a rerun after a transient failure tries again
        output.write_subjects(table, stats)
    log.info(
        "subjects",
        requested=len(requests),
        accepted=len(chosen),
        rejected=len(rejects),
        seconds=round(stats["seconds"], 1),
    )
    return table, stats


def _subjects_tally(tally: Tally, stats: dict) -> None:
    tally.add_subjects(stats["requested"], stats["accepted"], stats["errors"], stats["seconds"], stats["first_error"])


def _work_row(s: dict) -> WorkRow:
    return WorkRow(s["subject_id"], s["shard"], s["category"], s["subject"], list(s["scenes"]), s["seed"])


def _run_images(cfg: S3JediConfig, output: OutputDir, table: list[dict], prov: dict, tally: Tally, console) -> dict:
    """Run the image stages on every subject not done yet; returns what this run made and when.

    ``steady_subjects_per_min`` (``summary.steady_rate``) leaves out start-up and drain: the rate that
    matters for a long build."""
    import ray
    import ray.data

    by_shard: dict[int, list[dict]] = {}
    for s in table:
        by_shard.setdefault(s["shard"], []).append(s)
    ids = {shard: [s["subject_id"] for s in rows] for shard, rows in by_shard.items()}
    done = output.done()
    output.clean(set(done))
    compact = ray.remote(num_cpus=cfg.datagen.writer.num_cpus)(compact_shard)
    pending: list[dict] = []
    remaining: dict[int, int] = {}
    futures = []
    for shard, rows in by_shard.items():
        if shard in done:
            continue
        have = output.parts(shard)
        todo = [s for s in rows if s["subject_id"] not in have]
        if todo:
            pending.extend(todo)
            remaining[shard] = len(todo)
        else:  # every subject finished before a kill, the shard was not compacted yet
            futures.append(compact.remote(output.root, shard, ids[shard], prov))
    log.info(
        "image stages",
        subjects=len(pending),
        shards_pending=len(remaining),
        shards_done=len(done),
        shards=len(by_shard),
    )
    made, finished, stamps = 0, len(done), []
    start, start_wall = time.perf_counter(), time.time()
    if pending:
        blocks = [to_table([_work_row(s)]) for s in pending]
        ds = ray_stages.image_pipeline(ray.data.from_arrow(blocks), cfg, output.root)
        with Display(tally, len(pending), cfg.datagen.progress, console) as display:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for status in batch.to_pylist():
                    tally.add(status)
                    made += 0 if status["rejected"] else 1
                    if status["finished_at"] is not None:
                        stamps.append(status["finished_at"] - start_wall)
                    remaining[status["shard"]] -= 1
                    if remaining[status["shard"]] == 0:
                        futures.append(compact.remote(output.root, status["shard"], ids[status["shard"]], prov))
                failed = tally.failed_stage(at_least=cfg.datagen.abort_after_errors)
                if failed:
                    raise StageFailedError(tally.failure_message(failed))
                futures, finished = _collect(futures, finished, len(by_shard), wait=False)
                display.update()
    _collect(futures, finished, len(by_shard), wait=True)
    stamps.sort()
    return {
        "sets": made,
        "subjects": len(stamps),
        "image_stages_s": time.perf_counter() - start,
        "first_subject_s": stamps[0] if stamps else None,
        "steady_subjects_per_min": steady_rate(stamps),
    }


def check_shards(cfg: S3JediConfig, output: OutputDir) -> dict[str, str]:
    """Verify every finished shard against its marker, in parallel Ray tasks: a damaged one is discarded
    (this run rebuilds it from its subjects), one of an older builder is brought to the current format.
    Returns ``{shard name: what was wrong}`` for the discarded ones."""
    import ray

    shards = sorted(output.done().items())
    check = ray.remote(num_cpus=cfg.datagen.writer.num_cpus)(check_shard)
    found = ray.get([check.remote(output.root, marker) for _, marker in shards])
    damaged = {shard_name(shard): reason for (shard, _), reason in zip(shards, found, strict=True) if reason}
    for name, reason in damaged.items():
        log.warning("damaged shard: rebuilding it", shard=name, reason=reason)
    return damaged


def _collect(futures: list, finished: int, total: int, wait: bool) -> tuple[list, int]:
    """Log the compactions that have finished (all of them with ``wait``); return the rest."""
    import ray

    if not futures:
        return futures, finished
    ready, rest = ray.wait(futures, num_returns=len(futures), timeout=None if wait else 0)
    for marker in ray.get(ready):
        finished += 1
        shard_done(marker, finished, total)
    return rest, finished


def build(cfg: S3JediConfig, out: str, console: Console | None = None) -> BuildResult:
    """Build (or resume building) the S3 dataset configured in ``cfg.datagen`` under ``out``."""
    start = time.perf_counter()
    root = storage.resolve(out)
    output = OutputDir(root)
    requests, category_rejects = subjects.requests(cfg)
    check_models(cfg)
    settings = data_settings(cfg)
    fp = fingerprint(settings)
    resumed = output.claim(settings, fp)
    _save_config(cfg, root)
    init_ray(cfg.ray)
    check_gpus(cfg)
    if not storage.is_uri(root) and (os.environ.get("RAY_ADDRESS") or cfg.ray.address):
        log.warning("--out is a local path: on a multi-node cluster it must be storage every node mounts", out=root)
    log.info("build", out=root, resumed=resumed, fingerprint=fp, subjects_requested=len(requests))

    saved = output.read_subjects()
    table, stats = saved if saved is not None else _run_subjects(cfg, requests, output, category_rejects)
    rebuilt = check_shards(cfg, output)
    output.upgrade_rejects(subjects.NAME)
    live = Tally()
    _subjects_tally(live, stats)
    run = _run_images(cfg, output, table, provenance(cfg, fp), live, console) if table else {"sets": 0, "subjects": 0}

    final = Tally()
    _subjects_tally(final, stats)
    markers = output.done()
    for marker in markers.values():
        for row in marker["rows"]:
            final.add(row)
    rejects = read_rejects(root)
    final.count_dropped(rejects)
    wall = time.perf_counter() - start
    summary = summary_dict(
        final,
        rejects,
        {
            "out": root,
            "profile": cfg.profile,
            "config_hash": config_hash(cfg),
            "fingerprint": fp,
            "shards": {"total": len({s["shard"] for s in table}), "done": len(markers)},
            "this_run": {
                "resumed": resumed,
                "wall_s": wall,
                **run,
                "sets_per_min": 60 * run["sets"] / wall if wall > 0 else 0.0,
                "rebuilt_shards": rebuilt,
            },
        },
    )
    output.write_summary(summary)
    output.write_card(summary, provenance(cfg, fp), rejects.num_rows)
    (console or Console(stderr=True)).print(stage_table(final, f"S3 build: {final.sets} sets, {final.images} images"))
    failed = final.failed_stage(at_least=1)
    if failed:
        raise StageFailedError(final.failure_message(failed))
    if not table:
        raise StageFailedError(
            f"stage subjects accepted no subject ({stats['requested']} requested); reasons in {storage.join(root, 'rejects')}"
        )
    return BuildResult(root, summary, resumed)
