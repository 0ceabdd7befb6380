"""The base of every config section: unknown keys are errors, assignments are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. ``extra="forbid"`` turns a typo in YAML or ``--set`` into a start-up error
    naming the dotted field, instead of a silently ignored setting discovered hours later."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
