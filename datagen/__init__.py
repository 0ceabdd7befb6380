"""The S3 builder: a resumable Ray Data pipeline from object categories to stylized same-subject image sets.

Stages, each a module with a typed config (``core.config.datagen``) and a plain class at its heart:
``subjects`` (LLM → descriptions and scene prompts), ``collages`` (SDXL), ``instances`` (Grounding DINO +
SAM), ``consistency`` (CLIP), ``backgrounds`` (inpainting), ``stylize`` (InstructPix2Pix). Each module
declares itself (``stage.Stage``: name, version, model families, config section, loader) and ``stages``
lists them in order; ``ray_stages`` wraps them for Ray Data, ``pipeline.build`` runs a build, ``output``
owns the directory layout and the verified resume, ``show`` reports on a build. The published format,
its readers and the dataset card are in ``core.s3``.
"""
