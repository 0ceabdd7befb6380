"""Training's fine-tuning for ``s3jedi eval``: only ``cluster`` sees both apps, so the evaluation job
gets it from here (``evaluation.finetuning.Trainer``).

The methods with a plan run through the fine-tuning runner together (one Ray Train run per subject
and method, ``finetune.concurrency`` at a time, as ``s3jedi finetune``); self-distillation runs its
phases (teacher, mining, student) through its own runner. GPU-seconds are each phase's seconds times
the GPUs it held: the training workers', and for self-distillation's mining its actors'.
"""

from __future__ import annotations

from core.config import S3JediConfig


def train_subjects(cfg: S3JediConfig, methods: list[str], folders: dict[str, str]):
    """Fine-tune every subject of ``folders`` with every method; one outcome per (method, subject)."""
    from core.subjects import make_subject_id
    from evaluation.finetuning import FineTuning
    from training.finetune.runner import finetune
    from training.selfdistill.runner import selfdistill

    scaling = cfg.finetune.scaling
    gpus = scaling.gpus_per_worker * scaling.num_workers if scaling.use_gpu else 0.0
    subjects = ",".join(folders.values())
    outcomes = []
    planned = [m for m in methods if m != "selfdistill"]
    if planned:
        for o in finetune(cfg, planned, subjects).outcomes:
            outcomes.append(
                FineTuning(o.method, o.subject, o.subject_id, o.status, o.seconds, o.seconds * gpus, o.error)
            )
    if "selfdistill" in methods:
        mining = cfg.selfdistill.mining
        for s in selfdistill(cfg, subjects).subjects:
            t = s.seconds
            training = t.get("teacher", 0.0) + t.get("student", 0.0)
            gpu_s = training * gpus + t.get("generation", 0.0) * mining.gpus_per_generator
            gpu_s += t.get("scoring", 0.0) * mining.gpus_per_scorer
            sid = s.student or make_subject_id(cfg.selfdistill.subject_id, s.subject, "selfdistill")
            outcomes.append(FineTuning("selfdistill", s.subject, sid, s.status, sum(t.values()), gpu_s, s.error))
    return outcomes
