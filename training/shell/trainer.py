"""Driver side of every run: the resume check, the ``TorchTrainer``, failure handling, the result.

``fit(recipe)`` is what each trainer's entry point calls. Failures are handled here rather than by
Ray Train's own restarts (``FailureConfig(max_failures=0)``), because Ray retries every worker error
alike: a deterministic one — bad data, a bad setting, a bug — failed the same way three times over
(158 s for one corrupt source). Here a run whose every failed worker raised such an error stops at
once with that error: bad input and programming errors (``NOT_RETRIED``), and errors of the data
pipeline's own code (Ray Data's ``UserCodeException``, raised once Ray Data's own retries are spent;
a restart would read the same data again). Any other failure (a worker process or node lost, an
out-of-memory, a storage hiccup) restarts the run from its newest complete checkpoint, up to
``run.max_failures`` times. Ray Train still handles preemptions itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.cli_options import USER_ERRORS
from core.logs import get_logger
from training.shell.loop import train_loop_per_worker
from training.shell.ray_run import run_config, run_dir, scaling_config
from training.shell.recipe import Recipe
from training.shell.resume import check_resume

log = get_logger("train")

NOT_RETRIED = (*USER_ERRORS, TypeError, KeyError, AttributeError, NameError, NotImplementedError, AssertionError)
"""Errors a rerun of the same code on the same data and settings raises again."""


@dataclass(frozen=True)
class RunResult:
    run_dir: str
    export_dir: str
    checkpoint: str | None
    metrics: dict


def build_trainer(recipe: Recipe, in_process: bool = False):
    """The recipe's ``TorchTrainer``; ``in_process`` uses Ray Train's local mode (no workers)."""
    from ray.train import DataConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    datasets = recipe.datasets()
    extra = {}
    if datasets:
        from ray.data import ExecutionOptions

        # A deterministic row order makes the saved data position meaningful on resume.
        extra = {
            "datasets": datasets,
            "dataset_config": DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
        }
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "recipe": type(recipe),
            "config": recipe.cfg.model_dump(mode="json"),
            "options": recipe.options,
        },
        scaling_config=ScalingConfig(num_workers=0) if in_process else scaling_config(recipe.scaling),
        run_config=run_config(recipe.run),
        **extra,
    )


def not_retried(exc: Exception) -> Exception | None:
    """The worker error to raise as it is when no rerun can succeed, else None."""
    from ray.exceptions import UserCodeException
    from ray.train import WorkerGroupError

    if not isinstance(exc, WorkerGroupError) or not exc.worker_failures:
        return None
    errors = list(exc.worker_failures.values())
    return errors[0] if all(isinstance(e, (*NOT_RETRIED, UserCodeException)) for e in errors) else None


def fit(recipe: Recipe, in_process: bool = False) -> RunResult:
    """Train ``recipe`` to its last step (resuming its run when there is one) and export it."""
    from ray.train import TrainingFailedError

    check_resume(run_dir(recipe.run), recipe.settings(), recipe.run_field, recipe.cfg.train.resume)
    limit, failures = recipe.run.max_failures, 0
    while True:
        try:
            result = build_trainer(recipe, in_process).fit()
            break
        except TrainingFailedError as exc:
            cause = not_retried(exc)
            if cause is not None:
                raise cause from None
            if limit != -1 and failures >= limit:
                raise
            failures += 1
            log.warning("run failed; restarting from its last checkpoint", run=recipe.label, attempt=failures + 1)
    return RunResult(
        run_dir=run_dir(recipe.run),
        export_dir=recipe.export_location,
        checkpoint=result.checkpoint.path if result.checkpoint else None,
        metrics=dict(result.metrics or {}),
    )


def failure_reason(exc: Exception) -> str:
    """One line: Ray Train's errors carry the worker's traceback, whose last line is the cause."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return f"{type(exc).__name__}: {text}"[:1000]
