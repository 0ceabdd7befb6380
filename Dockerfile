# s3jedi on the official Ray GPU image of the Ray version pinned in pyproject.toml (ray==2.60.0,
# Python 3.11). One image for every pod: Ray head and workers, RayJob submitter, Serve replicas.
# Build:  docker build -t REGISTRY/s3jedi:0.1.0 .   (docs/deploy.md)
FROM rayproject/ray:2.60.0-py311-gpu

# The base image's user `ray` (uid 1000, gid 100) owns its Python in /home/ray/anaconda3, so the
# project installs without root; the manifests run every pod as that uid (runAsNonRoot).
USER 1000:100
WORKDIR /home/ray/s3jedi

# Editable install: configs/, manifests/ and the packages stay where core.paths.REPO_ROOT finds them,
# so `python -m datagen --config sd14` means the same here as in a checkout. Versions come from
# constraints.txt (the set the tests run); Ray itself is the image's (same version, so pip keeps it).
COPY --chown=1000:100 . .
RUN pip install --no-cache-dir -c constraints.txt -e .

# The gpu extra (vLLM, bitsandbytes) cannot share that lock: vLLM pins torch exactly (0.33.0 wants
# torch 2.14.0 / torchvision 0.29.0, the lock has 2.14.1 / 0.29.1; older vLLMs want transformers < 5.20).
# It is installed second, at a pinned vLLM, and pip moves only what vLLM's own pins require.
ARG VLLM_VERSION=0.33.0
RUN pip install --no-cache-dir -e '.[gpu]' "vllm==${VLLM_VERSION}"

# The tiny zoo is deterministic and small (~110 MB): baked in, the tiny profile runs on a fresh cluster
# without a model store. Production profiles load hub checkpoints through HF_HOME (a shared volume).
ENV S3JEDI_HOME=/home/ray/.cache/s3jedi \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    PYTHONUNBUFFERED=1
RUN s3jedi zoo build

# KubeRay supplies the command (`ray start ...`); this default only makes `docker run IMAGE` useful.
CMD ["s3jedi", "--help"]
