"""The training shell: the one Ray Train loop every kind of training runs in.

``loop.train_loop_per_worker`` is the project's only per-worker training function; ``trainer.fit``
its driver side (the resume check, failure handling, the result). What differs between JeDi, a
fine-tuned subject and a multi-concept scene is a *recipe* (``recipe.Recipe``): a plain object with
``step(batch)``, checkpoint state and ``export(dir)``, testable without a cluster. The pieces every
recipe shares live here once: precision, the optimizer and its step ending (``optim``), keyed
randomness (``seeds``), LoRA targets and export (``lora``), training images (``images``), checkpoint
directories (``checkpoint``), metrics and progress lines (``metrics``), settings a resume must keep
(``resume``), Ray Train wiring (``ray_run``).

A new kind of training is a new recipe; a new fine-tuning method is not even that, only a plan
registered in ``core.methods``.
"""
