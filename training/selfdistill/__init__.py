"""Filtered self-distillation: a DreamBooth teacher mines samples for LLM-written prompts, the samples that
pass both the identity and the text filter (gold) teach a student; repeatable for several rounds.

``runner.selfdistill(cfg, subjects)`` is the entry point (``s3jedi selfdistill``); ``gold`` is the
filter, ``prompts``/``writers`` the mining prompts, ``mining`` the Ray Data generation + scoring job,
``records`` what each subject's round leaves on storage.
"""
