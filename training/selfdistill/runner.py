"""Driver side of self-distillation: teacher → mining prompts → mining + scoring → gold → student, per round.

Each phase is one job over all subjects (a barrier between phases): the teachers train concurrently
as DreamBooth runs of the fine-tuning runner, the LLM writes every class's prompts, one Ray Data job
draws and scores every sample, and the students train concurrently through the same runner with their
gold samples as extra instance images (method ``selfdistill``). Round r's student is round r+1's teacher.

Everything lives under ``<finetune.run.storage_path>/<selfdistill.name>``: the Ray Train runs
(``teacher/<id>``, ``student-r<r>/<id>``), the per-subject records (``records``) and ``report.json``;
subjects are published to the subject store like any fine-tuned subject. A rerun with the same name
resumes: teachers and students this run trained (``trained.json``) and the store still holds are not
trained again, finished rounds are not mined again, an interrupted training run resumes from its
checkpoint. ``run.json`` holds the settings that decide the results; a rerun with other ones is
refused, naming the first differing field.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from core import storage, zoo
from core.config import S3JediConfig, config_hash
from core.logs import get_logger
from core.ray_runtime import init_ray
from core.s3.writer import write_bytes
from core.subject_pipeline import published, store_location
from core.subjects import SubjectNotFoundError, SubjectStore
from core.subjects import make_subject_id as subject_id
from training.finetune.runner import finetune
from training.finetune.subjects import discover, load_subject
from training.selfdistill import prompts as mining_prompts
from training.selfdistill.gold import select_gold
from training.selfdistill.mining import MiningPlan, mine
from training.selfdistill.records import (
    RoundSummary,
    gold_path,
    read_class_prompts,
    read_summary,
    write_class_prompts,
    write_round,
)
from training.selfdistill.writers import write_prompts
from training.shell.images import SubjectDataError, image_paths

log = get_logger("selfdistill")


@dataclass
class SubjectReport:
    subject: str
    class_word: str | None
    status: str = "done"  # "done" | "failed"
    teacher: str | None = None
    student: str | None = None
    error: str | None = None
    rounds: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def fail(self, error: str) -> None:
        self.status, self.error = "failed", error
        log.warning("subject failed", subject=self.subject, error=error)

    def add_seconds(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + seconds, 3)

    def shares(self) -> dict[str, float]:
        """Share of the subject's time spent in generation, training (teacher + student) and scoring."""
        total = sum(self.seconds.values())
        groups = {"generation": ("prompts", "generation"), "training": ("teacher", "student"), "scoring": ("scoring",)}
        return {
            g: round(sum(self.seconds.get(p, 0.0) for p in ps) / total, 4) if total else 0.0 for g, ps in groups.items()
        }


@dataclass
class SelfDistillReport:
    run: str
    report_path: str
    subjects: list[SubjectReport]
    wall_s: dict[str, float] = field(default_factory=dict)
    """Driver wall time of each phase of this invocation (``teacher``, ``mining-r1``, ``student-r1``, ...)
    for all subjects together, start-up of workers and actors included: what the per-subject
    ``seconds`` (time inside the workers) leave out."""

    @property
    def failed(self) -> list[SubjectReport]:
        return [s for s in self.subjects if s.status != "done"]

    def to_dict(self) -> dict:
        return {
            "run": self.run,
            "report": self.report_path,
            "done": len(self.subjects) - len(self.failed),
            "failed": len(self.failed),
            "wall_s": self.wall_s,
            "subjects": [{**asdict(s), "shares": s.shares()} for s in self.subjects],
        }


def run_root(cfg: S3JediConfig) -> str:
    return storage.join(cfg.finetune.run.storage_path, cfg.selfdistill.name)


def decisive_settings(cfg: S3JediConfig) -> dict:
    """What decides a run's results; pool sizes, batch sizes and resources may change between resumes."""
    sd = cfg.selfdistill.model_dump(mode="json", exclude={"name"})
    sd["prompts"] = {k: v for k, v in sd["prompts"].items() if k not in ("resources", "vllm")}
    sd["mining"] = {k: sd["mining"][k] for k in ("images_per_prompt", "steps", "guidance_scale")}
    ft = cfg.finetune.model_dump(
        mode="json", include={"resolution", "batch_size", "flip", "dreambooth", "class_images"}
    )
    ft["class_images"] = {k: ft["class_images"][k] for k in ("prompt", "steps", "guidance_scale")}
    roles = ("sd", "clip", "dino", "detector", "segmenter")
    roles += ("negclip",) if cfg.selfdistill.scoring.negclip else ()
    roles += ("llm",) if sd["prompts"]["backend"] != "template" else ()
    models = {role: getattr(cfg.models, role) for role in roles}
    return {"seed": cfg.seed, "models": models, "finetune": ft, "selfdistill": sd}


def first_difference(old, new, prefix: str = "") -> str | None:
    """The dotted name of the first setting that differs (None when equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
            if found:
                return found
        return None
    return None if old == new else prefix


def check_run(root: str, settings: dict) -> None:
    """Record the run's settings on first use; refuse to resume it with different ones."""
    path = storage.join(root, "run.json")
    if storage.exists(path):
        fs, p = storage.filesystem(path)
        with fs.open_input_stream(p) as f:
            recorded = json.loads(f.read())
        differs = first_difference(recorded, settings)
        if differs:
            raise ValueError(
                f"selfdistill.name: run {root} was made with other settings ({differs}: {_at(recorded, differs)!r} "
                f"there, {_at(settings, differs)!r} now); choose another selfdistill.name"
            )
        return
    write_bytes(json.dumps(settings, indent=1, sort_keys=True).encode(), path)


def _at(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def phase_config(cfg: S3JediConfig, run_name: str, id_template: str, steps: int | None = None) -> S3JediConfig:
    """The config a fine-tuning phase runs with: its runs under the self-distillation run, its own ids,
    and what the paper fixes for teacher and student alike (§3.1, §3.3): the UNet tuning, the learning
    rate and the photos' prompt."""
    sd = cfg.selfdistill
    data = cfg.model_dump(mode="json")
    data["finetune"]["run"].update(storage_path=run_root(cfg), name=run_name)
    data["finetune"]["subject_id"] = id_template
    dreambooth = data["finetune"]["dreambooth"]
    dreambooth.update(unet=sd.unet.model_dump(), prompt_template=sd.instance_prompt)
    dreambooth["train"]["optim"]["lr"] = sd.lr
    if steps is not None:
        dreambooth["train"]["steps"] = steps
    return S3JediConfig.model_validate(data)


def _read(path: str) -> bytes:
    fs, p = storage.filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def trained(root: str) -> dict[str, list[str]]:
    """Phase (``teacher``, ``student-r1``, ...) → subject ids this run has trained and published.

    Run-scoped on purpose: another run may have published a subject under the same id in the same
    store, and that one must not pass for this run's."""
    path = storage.join(root, "trained.json")
    if not storage.exists(path):
        return {}
    fs, p = storage.filesystem(path)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())


def done_before(root: str, cfg: S3JediConfig, phase: str, sid: str, method: str, steps: int) -> bool:
    return sid in trained(root).get(phase, []) and published(cfg, sid, method, steps)


def _train(
    cfg: S3JediConfig,
    root: str,
    method: str,
    names: list[str],
    folders: dict[str, str],
    reports: dict[str, SubjectReport],
    phase: str,
    timing: str,
    extras: dict[str, str] | None = None,
) -> None:
    """Fine-tune ``names`` through the fine-tuning runner (their seconds count as ``timing``); failures
    mark their subjects failed, the others are added to ``trained.json`` under ``phase``."""
    if not names:
        return
    share = cfg.selfdistill.student.gold_share
    report = finetune(cfg, [method], ",".join(folders[n] for n in names), extras, share)
    for outcome in report.outcomes:
        rep = reports[outcome.subject]
        rep.add_seconds(timing, outcome.seconds)
        if outcome.status != "done":
            rep.fail(f"{phase} {outcome.subject_id}: {outcome.error}")
    done = trained(root)
    done[phase] = sorted({*done.get(phase, []), *(o.subject_id for o in report.outcomes if o.status == "done")})
    write_bytes(json.dumps(done, indent=1).encode(), storage.join(root, "trained.json"))


def teachers(cfg: S3JediConfig, names: list[str], folders: dict[str, str], reports: dict[str, SubjectReport]) -> None:
    """Round 1's teacher of every subject: a published subject (``selfdistill.teacher``) or DreamBooth."""
    sd = cfg.selfdistill
    store = SubjectStore(store_location(cfg))
    if sd.teacher is not None:
        for name in names:
            teacher = subject_id(sd.teacher, name, "dreambooth")
            try:
                store.card(teacher)
            except SubjectNotFoundError:
                reports[name].fail(f"selfdistill.teacher: no subject {teacher!r} in {store.uri}")
                continue
            reports[name].teacher = teacher
        return
    tcfg = phase_config(cfg, "teacher", sd.subject_id + "-teacher")
    steps = tcfg.finetune.dreambooth.train.steps
    for name in names:
        reports[name].teacher = subject_id(tcfg.finetune.subject_id, name, "dreambooth")
    root = run_root(cfg)
    todo = [n for n in names if not done_before(root, tcfg, "teacher", reports[n].teacher, "dreambooth", steps)]
    log.info("training teachers", subjects=len(todo), published_already=len(names) - len(todo))
    _train(tcfg, root, "dreambooth", todo, folders, reports, "teacher", "teacher")


def _finite(value: float) -> float | None:
    """NaN (no sample had the score) as null: reports are strict JSON."""
    return None if np.isnan(value) else value


def class_prompts(cfg: S3JediConfig, class_words: list[str]) -> dict[str, dict]:
    """Every class's mining prompts: kept from earlier in the run, or written now (one request per class)."""
    root = run_root(cfg)
    found = {w: row for w in class_words if (row := read_class_prompts(root, w)) is not None}
    todo = [w for w in class_words if w not in found]
    if todo:
        for row in write_prompts(cfg, mining_prompts.requests(todo, cfg.seed, cfg.selfdistill.prompts)):
            found[row["class_word"]] = write_class_prompts(root, row)
    return found


def mine_round(
    cfg: S3JediConfig,
    round_: int,
    names: list[str],
    teacher_of: dict[str, str],
    reports: dict[str, SubjectReport],
    photos: dict[str, list[bytes]],
) -> dict[str, RoundSummary]:
    """Prompts, samples, scores and gold of every subject in ``names`` for one round (finished ones are read)."""
    sd, root = cfg.selfdistill, run_root(cfg)
    summaries = {n: s for n in names if (s := read_summary(root, n, round_)) is not None}
    todo = [n for n in names if n not in summaries]
    if not todo:
        return summaries
    start = time.perf_counter()
    by_class = class_prompts(cfg, sorted({reports[n].class_word for n in todo}))
    resolved = {n: by_class[reports[n].class_word] for n in todo}
    prompt_seconds = (time.perf_counter() - start) / len(todo)
    plans = [
        MiningPlan(n, reports[n].class_word, round_, teacher_of[n], resolved[n]["prompts"], photos[n]) for n in todo
    ]
    minimum = {sd.gold.image_metric: sd.conflict.min_identity, sd.gold.text_metric: sd.conflict.min_text}
    gold_prompt = sd.instance_prompt if sd.student.gold_prompt == "instance" else None
    log.info(
        "mining",
        round=round_,
        subjects=len(todo),
        images=len(todo) * sd.prompts.num_prompts * sd.mining.images_per_prompt,
    )
    tables = mine(cfg, plans)
    for name in todo:
        samples = tables[name]
        selection = select_gold(
            samples[sd.gold.image_metric].to_numpy(zero_copy_only=False),
            samples[sd.gold.text_metric].to_numpy(zero_copy_only=False),
            samples["prompt_id"].to_numpy(),
            samples["sample"].to_numpy(),
            sd.gold.top_percent,
            sd.conflict.min_identity,
            sd.conflict.min_text,
        )
        summary = RoundSummary(
            subject=name,
            round=round_,
            teacher=teacher_of[name],
            prompts_source=resolved[name]["source"],
            prompts_reason=resolved[name]["reason"],
            samples=samples.num_rows,
            gold=selection.count,
            keep=selection.keep,
            image_threshold=_finite(selection.image_threshold),
            text_threshold=_finite(selection.text_threshold),
            conflict_rate=selection.conflict_rate,
            conflicts=int(selection.conflicted.sum()),
            conflict_minimum=minimum,
            seconds={
                "prompts": round(prompt_seconds, 3),
                "generation": round(float(np.sum(samples["generation_s"].to_numpy())), 3),
                "scoring": round(float(np.sum(samples["scoring_s"].to_numpy())), 3),
            },
            config_hash=config_hash(cfg),
        )
        summaries[name] = write_round(root, resolved[name], samples, selection, summary, gold_prompt)
        if summary.gold == 0:
            log.warning("no gold samples: the student learns from the photos only", subject=name, round=round_)
        else:
            log.info(
                "gold",
                subject=name,
                round=round_,
                gold=summary.gold,
                samples=summary.samples,
                conflict_rate=summary.conflict_rate,
            )
    return summaries


def gold_sources(root: str, round_: int, summaries: dict[str, RoundSummary]) -> dict[str, str]:
    """Subject → the Parquet of its gold samples, the student's extra instance images. A subject
    without gold is left out: its student learns from its photos alone."""
    return {name: gold_path(root, name, round_) for name, summary in summaries.items() if summary.gold > 0}


def round_record(summary: RoundSummary, student: str | None) -> dict:
    """A round as the report shows it: the summary, the student it produced and whether that student
    saw its photos only (zero gold)."""
    return {**asdict(summary), "student": student, "photos_only": summary.gold == 0}


def students(
    cfg: S3JediConfig,
    round_: int,
    names: list[str],
    summaries: dict[str, RoundSummary],
    folders: dict[str, str],
    reports: dict[str, SubjectReport],
) -> None:
    """Train round ``round_``'s students on photos + gold (photos only where a subject has no gold)."""
    sd, root = cfg.selfdistill, run_root(cfg)
    template = sd.subject_id if round_ == sd.rounds else f"{sd.subject_id}-r{round_}"
    scfg = phase_config(cfg, f"student-r{round_}", template, sd.student.steps)
    steps = scfg.finetune.dreambooth.train.steps
    ids = {n: subject_id(template, n, "selfdistill") for n in names}
    todo = [n for n in names if not done_before(root, scfg, f"student-r{round_}", ids[n], "selfdistill", steps)]
    extras = gold_sources(root, round_, {n: summaries[n] for n in todo})
    log.info("training students", round=round_, subjects=len(todo), with_gold=len(extras))
    _train(scfg, root, "selfdistill", todo, folders, reports, f"student-r{round_}", "student", extras)
    for name in names:
        rep, summary = reports[name], summaries[name]
        done = rep.status == "done"
        rep.rounds.append(round_record(summary, ids[name] if done else None))
        for phase, seconds in summary.seconds.items():
            rep.add_seconds(phase, seconds)
        if done:
            rep.student = ids[name]


def selfdistill(cfg: S3JediConfig, subjects: str) -> SelfDistillReport:
    """Run every round for every subject; returns (and writes) the report."""
    sd, root = cfg.selfdistill, run_root(cfg)
    if sd.prompts.backend != "template":
        zoo.resolve("llm", cfg.models.llm, cfg.home)  # a missing LLM fails here, before any training
    if sd.scoring.negclip:
        zoo.resolve("negclip", cfg.models.negclip, cfg.home)  # so does a missing NegCLIP checkpoint
    reports, folders, photos = {}, {}, {}
    for spec in discover(subjects, cfg.finetune):
        rep = reports[spec.name] = SubjectReport(spec.name, spec.class_word)
        if spec.error:
            rep.fail(spec.error)
            continue
        try:
            load_subject(spec.source, cfg.finetune.resolution)
        except SubjectDataError as exc:
            rep.fail(str(exc))
            continue
        folders[spec.name] = spec.source
        photos[spec.name] = [_read(p) for p in image_paths(spec.source)]
    check_run(root, decisive_settings(cfg))
    init_ray(cfg.ray)

    report = SelfDistillReport(sd.name, storage.join(root, "report.json"), list(reports.values()))

    def active() -> list[str]:
        return [n for n in folders if reports[n].status == "done"]

    def timed(phase: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            report.wall_s[phase] = round(time.perf_counter() - start, 3)

    timed("teacher", teachers, cfg, active(), folders, reports)
    teacher_of = {n: reports[n].teacher for n in active()}
    for round_ in range(1, sd.rounds + 1):
        names = active()
        if not names:
            break
        summaries = timed(f"mining-r{round_}", mine_round, cfg, round_, names, teacher_of, reports, photos)
        timed(f"student-r{round_}", students, cfg, round_, names, summaries, folders, reports)
        teacher_of = {n: reports[n].student for n in active()}
    write_bytes(json.dumps(report.to_dict(), indent=1, default=str).encode(), report.report_path)
    return report
