"""The serving step of ``s3jedi demo``: start the app, personalize over HTTP, stop.

It goes through the same path as any client — HTTP, the gateway's limits, batching, the JeDi
replica — on a free loopback port in dev mode, so it needs no keys and cannot collide with a server
already running on ``serving.port``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from core.config import S3JediConfig
from core.logs import get_logger

log = get_logger("serving.demo")
PROMPTS = ["a photo of the subject on the beach", "a photo of the subject in the snow"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_serving_demo(cfg: S3JediConfig, references: Path, out_dir: Path, steps: int = 4) -> dict:
    from ray import serve

    from serving.app import start
    from serving.client import Client, images

    photos = sorted(p for p in Path(references).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:3]
    if not photos:
        raise FileNotFoundError(f"--references: no .jpg/.png images in {references}")
    cfg = cfg.model_copy(deep=True)
    cfg.serving.host = "127.0.0.1"
    cfg.serving.port = free_port()
    cfg.serving.auth.api_keys_env = "S3JEDI_DEMO_NO_KEYS"  # dev mode whatever the environment holds
    cfg.serving.auth.api_keys_file = None
    out_dir.mkdir(parents=True, exist_ok=True)
    start_time = time.perf_counter()
    url = start(cfg)
    try:
        client = Client(url)
        client.wait_ready()
        started = time.perf_counter() - start_time
        request_time = time.perf_counter()
        reply = client.personalize(photos, PROMPTS, steps=steps, seed=cfg.seed)
        request_s = time.perf_counter() - request_time
        paths = []
        for i, image in enumerate(images(reply)):
            paths.append(out_dir / f"served-{i}.png")
            image.save(paths[-1])
    finally:
        serve.shutdown()
    log.info("served personalization", url=url, images=len(paths), request_s=round(request_s, 2))
    return {
        "url": url,
        "start_s": round(started, 2),
        "request_s": round(request_s, 3),
        "references": [p.name for p in photos],
        "images": [str(p) for p in paths],
        "seeds": [item["seed"] for item in reply["images"]],
        "batch_size": reply["batch_size"],
    }
