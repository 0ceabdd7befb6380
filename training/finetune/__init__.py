"""Fine-tuning personalization on Ray Train: DreamBooth, Textual Inversion, two-stage TI→UNet, CoRe, and
any method registered in ``core.methods``.

A method is a plan (``core.methods``); ``recipe.SubjectRecipe`` trains any plan on one subject and is
run by the training shell (``training.shell``: checkpoints, resume, metrics, export); ``runner``
schedules one run per subject, many at once; results are written in the store format of
``core.subjects`` and drawn through ``core.subject_pipeline``.
"""
