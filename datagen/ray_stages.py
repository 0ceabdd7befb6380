"""The Ray Data shell around the stages: actor classes for model stages, tasks for the rest.

Each actor loads its models once (``Lazy``) and applies its stage row by row through
``rows.apply_stage``, the error boundary. One class per stage, made from the stage's declaration
(``actor_class``), so that Ray Data's operators, progress bars and stats carry the stage's name
(``MapBatches(Collages)``); ``ImageStages`` runs them all in one actor (``datagen.execution: fused``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from core import zoo
from core.config import S3JediConfig
from datagen import output, stages, subjects, vllm_backend
from datagen.imaging import model_dtype
from datagen.rows import apply_stage, error_details, from_table, to_table
from datagen.stage import Stage, device


class StageLoadError(RuntimeError):
    """A stage's models could not be loaded; raised for every row that reaches the stage."""


class Lazy:
    """A model (or a stage holding models) loaded on first use. A load failure is kept and raised again
    on every use, so a model that exists but does not load (a wrong checkpoint for the role, a truncated
    file) ends the build as "stage X failed on every row: <the load error>" instead of as Ray restarting
    a dying actor over and over."""

    def __init__(self, load: Callable[[], Any], what: str):
        self._load, self.what = load, what
        self.value: Any = None
        self.error: str | None = None

    def get(self) -> Any:
        if self.value is None and self.error is None:
            try:
                self.value = self._load()
            except Exception as exc:
                self.error = f"loading {self.what} failed: {type(exc).__name__}: {exc}"
        if self.error is not None:
            raise StageLoadError(self.error)
        return self.value


def lazy_stage(cfg: S3JediConfig, stage: Stage, device: str) -> Callable:
    """The stage's ``WorkRow -> WorkRow`` callable, its models loaded on the first row."""
    fn = Lazy(lambda: stage.load(cfg, device), f"the {stage.name} models")
    return lambda row: fn.get()(row)


class StageActor:
    """Runs one image stage. ``actor_class`` makes a subclass per stage, named after it."""

    stage: Stage

    def __init__(self, cfg: S3JediConfig):
        self.fn = lazy_stage(cfg, self.stage, device(self.stage.resources(cfg)))

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_table([apply_stage(self.stage.name, self.fn, row) for row in from_table(batch)])


def actor_class(stage: Stage) -> type[StageActor]:
    """The actor class of ``stage`` (``Collages`` for ``collages``): its own class only so that Ray Data's
    operators, progress bars and stats carry the stage's name (``MapBatches(Collages)``)."""
    return type(stage.class_name, (StageActor,), {"stage": stage, "__doc__": f"Runs the {stage.name} stage."})


class ImageStages:
    """``execution: fused``: every image stage in one actor, in order, row by row. Models load on the
    first row that reaches their stage, so a build whose rows all stop early never loads the later ones."""

    def __init__(self, cfg: S3JediConfig, stage_list: tuple[Stage, ...]):
        dev = device(cfg.datagen.fused)
        self.fns = {stage.name: lazy_stage(cfg, stage, dev) for stage in stage_list}

    def _row(self, row):
        for name, fn in self.fns.items():
            row = apply_stage(name, fn, row)
        return row

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_table([self._row(row) for row in from_table(batch)])


def image_pipeline(ds, cfg: S3JediConfig, root: str):
    """Chain the image stages and the writer onto a dataset of work rows. The stage list is read here, in
    the driver, and travels with the actors, so a stage registered in the driver runs in every worker."""
    import ray.data

    stage_list = stages.image_stages()
    if cfg.datagen.execution == "pools":
        pools = [(actor_class(s), {"cfg": cfg}, s.resources(cfg)) for s in stage_list]
    else:
        pools = [(ImageStages, {"cfg": cfg, "stage_list": stage_list}, cfg.datagen.fused)]
    for actor, kwargs, res in pools:
        ds = ds.map_batches(
            actor,
            fn_constructor_kwargs=kwargs,
            batch_size=res.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=res.concurrency),
            num_gpus=res.num_gpus,
            num_cpus=res.num_cpus,
        )
    writer = cfg.datagen.writer
    return ds.map_batches(
        output.write_parts,
        fn_kwargs={"root": root},
        batch_size=writer.batch_size,
        batch_format="pyarrow",
        compute=ray.data.TaskPoolStrategy(size=writer.concurrency),
        num_cpus=writer.num_cpus,
    )


# -- stage 1: subjects ---------------------------------------------------------------------------------


class SubjectWriter:
    """The transformers backend's actor: ``models.llm`` loaded on the first batch, answering requests.
    A failing batch, or a model that does not load, becomes ``error`` answers (rejects), not a crash."""

    def __init__(self, cfg: S3JediConfig):
        dev = device(cfg.datagen.subjects.resources)
        dtype = model_dtype(cfg.datagen.precision, dev)
        self.writer = Lazy(
            lambda: subjects.TransformersWriter(
                zoo.load("llm", cfg.models.llm, device=dev, dtype=dtype, home=cfg.home), cfg.datagen.subjects
            ),
            "models.llm",
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        try:
            return subjects.answer_rows(rows, self.writer.get()(rows), None)
        except Exception as exc:
            return subjects.answer_rows(rows, [None] * len(rows), error_details(exc))


def subject_pipeline(ds, cfg: S3JediConfig):
    """Requests → answers (template tasks, a transformers actor pool, or the vLLM processor) → parsed rows."""
    import ray.data

    sub = cfg.datagen.subjects
    res = sub.resources
    if sub.backend == "template":
        ds = ds.map_batches(
            subjects.template_answers,
            fn_kwargs={"cfg": sub},
            batch_size=res.batch_size,
            batch_format="pyarrow",
            compute=ray.data.TaskPoolStrategy(size=res.concurrency),
            num_cpus=res.num_cpus,
        )
    elif sub.backend == "transformers":
        ds = ds.map_batches(
            SubjectWriter,
            fn_constructor_kwargs={"cfg": cfg},
            batch_size=res.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=res.concurrency),
            num_gpus=res.num_gpus,
            num_cpus=res.num_cpus,
        )
    else:
        ds = vllm_backend.build(cfg)(ds)
    return ds.map(subjects.parse_row, fn_kwargs={"cfg": sub}, num_cpus=res.num_cpus)
