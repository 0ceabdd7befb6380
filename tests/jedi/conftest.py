from __future__ import annotations

import pytest

from core import zoo


@pytest.fixture(scope="session")
def tiny_sd():
    """The tiny SD pipeline (built on demand); tests must not modify it."""
    zoo.build("tiny", ["sd"])
    pipe = zoo.load("sd", "tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def jedi_pipe(tiny_sd):
    from core.jedi import JeDiPipeline

    pipe = JeDiPipeline.from_base(tiny_sd, max_set_size=4)
    pipe.set_progress_bar_config(disable=True)
    return pipe
