"""The serving app on the ToyWorld profile (the shipped ToyWorld JeDi, example sets of its novel
subjects), in dev mode on loopback, started on the session's Ray once the tiny app of
``tests/serving`` is gone (one Serve instance per Ray cluster)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from serving.demo import free_port

APP = "s3jedi-toyworld-test"


@dataclass
class ToyServed:
    url: str
    cfg: object


@pytest.fixture(scope="package")
def toy_served(ray_local, zoo_home) -> ToyServed:
    from ray import serve

    from core.config import load_config
    from serving.app import start

    cfg = load_config(
        "toyworld",
        [
            f"serving.app_name={APP}",
            f"serving.port={free_port()}",
            "serving.auth.api_keys_env=S3JEDI_TEST_NO_KEYS",  # dev mode whatever the environment holds
            "serving.gateway.num_cpus=0.1",
            "serving.personalizer.num_cpus=0.5",
            "serving.generator.num_cpus=0.5",
            "serving.batching.wait_timeout_s=0.05",
        ],
    )
    url = start(cfg).rstrip("/")
    yield ToyServed(url, cfg)
    serve.shutdown()
