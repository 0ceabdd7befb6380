"""Fine-tuning personalization on Ray Train: DreamBooth, Textual Inversion, two-stage TI→UNet, CoRe.

One module per method builds a ``MethodPlan`` (``dreambooth``, ``textual_inversion``, ``two_stage``,
``core_method``); ``tuner.SubjectTuner`` runs any plan's steps; ``loop`` is the Ray Train per-worker
shell around it (checkpoints, resume, metrics, export); ``runner`` schedules one Ray Train run per
subject, many at once; results are written in the store format of ``core.subjects``.
"""
