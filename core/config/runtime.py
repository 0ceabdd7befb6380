"""Where jobs run: the Ray cluster to join, and how a local one is sized."""

from __future__ import annotations

from pydantic import Field

from core.config.base import Section


class RayConfig(Section):
    address: str | None = Field(
        None,
        description="Ray cluster to join ('auto', 'ray://host:10001'); RAY_ADDRESS wins; unset = start a local Ray",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a locally started Ray (default: all)")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of a locally started Ray (default: all seen)")
    namespace: str = "s3jedi"
