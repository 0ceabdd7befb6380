"""Concept-driven EM for multi-concept scenes: one token per concept learned from images without masks,
the masks read from the tokens' own cross-attention (E-step) while the tokens learn on them (M-step).

``scene`` reads a scene folder, ``synthetic`` builds one with known masks from DreamBooth photos,
``em.SceneRecipe`` is the method as a recipe of the training shell, ``masks``/``crf`` turn attention
into masks, ``runner.run_scene`` runs a scene, ``export`` writes the subject, the mask history and the
IoU curve.
"""
