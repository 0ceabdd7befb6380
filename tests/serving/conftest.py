"""One serving app for every serving test: started once for this package on the shared local Ray,
and shut down when the package is done, so its replicas do not hold CPUs other packages' tests need.

The app runs with tight test limits (so each limit can be hit cheaply), four API keys (so rate
limiting in one test cannot starve another), a subject store holding real fine-tuned subjects
(a LoRA and a textual inversion made on the tiny SD), and the fine-tuning method that
``test_method_extension`` defines (a plugin: its module is named in the config).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.demo import free_port
from tests.serving.adapters import make_lora_subject, make_ti_subject

APP = "s3jedi-test"
KEYS = {name: f"test-key-{name}-0123456789abcdef" for name in ("main", "fuzz", "rate", "browser")}
TEST_SETTINGS = [
    f"serving.app_name={APP}",
    "serving.request_timeout_s=30",
    "serving.retry_after_s=3",
    "serving.auth.rate_limit_per_minute=600",
    "serving.auth.rate_limit_burst=60",
    "serving.limits.max_request_bytes=4194304",
    "serving.limits.max_image_bytes=1048576",
    "serving.limits.max_image_pixels=1000000",
    "serving.limits.max_side=128",
    "serving.limits.max_steps=30",
    "serving.limits.max_prompts=4",
    "serving.limits.max_images_per_prompt=4",
    "serving.limits.max_images_per_request=4",
    "serving.limits.max_prompt_chars=200",
    "serving.defaults.steps=2",
    "serving.batching.max_batch_size=4",
    "serving.batching.wait_timeout_s=0.15",
    "serving.gateway.num_cpus=0.1",
    "serving.personalizer.num_cpus=0.5",
    "serving.personalizer.max_ongoing_requests=4",
    "serving.personalizer.max_queued_requests=4",
    "serving.generator.num_cpus=0.5",
    "serving.generator.max_ongoing_requests=4",
    "serving.generator.max_queued_requests=16",
    "serving.subjects_per_replica=2",
    "finetune.plugins=[tests.serving.test_method_extension]",  # the method that test defines
]


@dataclass
class Served:
    url: str
    store: Path
    cfg: object

    def headers(self, key: str = "main") -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[key]}"}

    def model_info(self, deployment: str) -> dict:
        from ray import serve

        return serve.get_deployment_handle(deployment, app_name=APP).info.remote().result(timeout_s=30)


@pytest.fixture(scope="package")
def tiny_sd_pipe(zoo_home):
    from core import zoo

    pipe = zoo.load("sd", "tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="package")
def served(ray_local, zoo_home, tiny_sd_pipe, tmp_path_factory) -> Served:
    from ray import serve

    from core.config import load_config
    from serving.app import start

    root = tmp_path_factory.mktemp("serving")
    keys_file = root / "api-keys"
    keys_file.write_text("\n".join(KEYS.values()) + "\n")
    store = root / "subjects"
    make_lora_subject(store, "lora-dog", tiny_sd_pipe)
    make_ti_subject(store, "ti-dog", tiny_sd_pipe)
    cfg = load_config(
        "tiny",
        [
            *TEST_SETTINGS,
            f"serving.port={free_port()}",
            f"serving.auth.api_keys_file={keys_file}",
            f"serving.subjects_store={store}",
        ],
    )
    url = start(cfg).rstrip("/")
    yield Served(url, store, cfg)
    serve.shutdown()


@pytest.fixture(scope="session")
def photos(dreambooth) -> list[Path]:
    return sorted((dreambooth / "images" / "dog").glob("*.jpg"))
