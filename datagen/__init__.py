"""The S3 builder: a resumable Ray Data pipeline from object categories to stylized same-subject image sets.

Stages, each a module with a typed config (``core.config.datagen``) and a plain class at its heart:
``subjects`` (LLM → descriptions and scene prompts), ``collages`` (SDXL), ``instances`` (Grounding DINO +
SAM), ``consistency`` (CLIP), ``backgrounds`` (inpainting), ``stylize`` (InstructPix2Pix). ``ray_stages``
wraps them for Ray Data, ``pipeline.build`` runs a build, ``output`` owns the directory layout and
resume. The published format and its reader are in ``core.s3``.
"""
