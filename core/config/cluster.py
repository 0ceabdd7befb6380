"""Where jobs run on a shared cluster: storage, how jobs get their code and packages, Kubernetes sizes.

Used by ``s3jedi submit`` (Ray job submission to a running cluster) and ``s3jedi manifests render``
(KubeRay documents). Per-actor resources stay in each app's own section (``datagen.*.resources``,
``train.jedi.scaling``, ``serving.*``); this section sizes the *nodes* they run on, and rendering
checks that every actor a profile can ask for fits on one of them. Defaults are the tiny profile on a
small cluster (a laptop head, or a kind cluster with one GPU node at most).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import Section
from core.storage import is_uri

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# Names in a Ray runtime env are visible to anyone who can list jobs; credentials belong in Secrets.
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "API_KEY", "ACCESS_KEY", "PRIVATE_KEY")


class StorageSection(Section):
    """Roots that outlive a job: what a rerun resumes from and what the next stage reads.

    ``null`` means: for ``s3jedi submit``, keep the job's own setting (or its ``--out``); for Kubernetes
    manifests, a folder of that name on the shared volume (``kubernetes.shared_volume``)."""

    datasets: str | None = Field(None, description="S3 datasets: datagen writes <datasets>/<profile>")
    checkpoints: str | None = Field(None, description="Ray Train storage_path of train and finetune runs")
    subjects: str | None = Field(None, description="fine-tuned subject store (finetune.store, serving.subjects_store)")
    evaluations: str | None = Field(None, description="evaluation runs: eval writes <evaluations>/<profile>")
    models: str | None = Field(
        None, description="S3JEDI_HOME of jobs and pods (tiny zoo, caches); null = the node's (the image's) own"
    )
    hf_home: str | None = Field(None, description="HF_HOME of jobs and pods: hub checkpoints cached once per cluster")

    @field_validator("datasets", "checkpoints", "subjects", "evaluations")
    @classmethod
    def _roots(cls, value: str | None) -> str | None:
        if value is not None and not (is_uri(value) or PurePosixPath(value).is_absolute()):
            raise ValueError(
                "must be an absolute path on storage every node shares, or a URI (s3://, gs://): "
                "a job runs in a temporary copy of the repo"
            )
        return value

    @field_validator("models", "hf_home")
    @classmethod
    def _local_dirs(cls, value: str | None) -> str | None:
        if value is not None and (is_uri(value) or not PurePosixPath(value).is_absolute()):
            raise ValueError(
                "must be an absolute local path (a shared mount): it becomes an environment variable "
                "that libraries read as a directory"
            )
        return value


class PodResources(Section):
    """Requests = limits for one pod's main container (no overcommit: a Ray node's view of its resources
    must be what the kubelet guarantees). Defaults: a small helper pod (RayJob submitter, autoscaler)."""

    cpu: float = Field(0.5, gt=0, le=512, description="CPU cores")
    memory_gib: float = Field(1, gt=0, le=4096, description="memory in GiB")


class HeadGroup(PodResources):
    cpu: float = Field(2, gt=0, le=512, description="CPU cores (the head runs no tasks: num-cpus 0)")
    memory_gib: float = Field(8, gt=0, le=4096)
    shm_gib: float = Field(2, gt=0, le=1024, description="/dev/shm for the object store")


class WorkerGroup(PodResources):
    """An autoscaled group of Ray worker pods; the defaults are the CPU group."""

    cpu: float = Field(2, gt=0, le=512, description="CPU cores")
    memory_gib: float = Field(4, gt=0, le=4096)
    gpus: int = Field(0, ge=0, le=16, description="nvidia.com/gpu per pod")
    min_replicas: int = Field(0, ge=0, le=10_000)
    max_replicas: int = Field(2, ge=0, le=10_000, description="autoscaling upper bound; 0 = the group is left out")
    shm_gib: float = Field(2, gt=0, le=1024, description="/dev/shm for the object store and NCCL")
    accelerator_type: str | None = Field(
        None, description="GPU type Ray reports for these nodes (A100, L4, ...); checked against the app sections"
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes node labels, e.g. {cloud.google.com/gke-accelerator: nvidia-l4}"
    )

    @model_validator(mode="after")
    def _replicas(self) -> WorkerGroup:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        return self


class GpuWorkerGroup(WorkerGroup):
    cpu: float = Field(4, gt=0, le=512, description="CPU cores")
    memory_gib: float = Field(16, gt=0, le=4096)
    gpus: int = Field(1, ge=0, le=16, description="nvidia.com/gpu per pod")
    max_replicas: int = Field(1, ge=0, le=10_000, description="autoscaling upper bound; 0 = the group is left out")
    shm_gib: float = Field(4, gt=0, le=1024, description="/dev/shm for the object store and NCCL")


class SharedVolume(Section):
    claim_name: str = Field("s3jedi-shared", pattern=DNS_LABEL, description="a ReadWriteMany PersistentVolumeClaim")
    mount_path: str = Field("/mnt/s3jedi", pattern=r"^/", description="same path in every pod")


class SecretsSection(Section):
    """Kubernetes Secrets, by name only: manifests reference them, never carry their values."""

    ray_token: str = Field(
        "s3jedi-ray-token", pattern=DNS_LABEL, description="Ray auth token (data key auth_token): authOptions"
    )
    api_keys: str = Field(
        "s3jedi-api-keys", pattern=DNS_LABEL, description="serving API keys, one per line (data key api-keys)"
    )
    env: list[str] = Field(
        ["s3jedi-storage"],
        description="Secrets whose keys become environment variables of every pod (storage credentials, "
        "HF_TOKEN); optional references: a missing Secret adds nothing",
    )

    @field_validator("env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(DNS_LABEL, name):
                raise ValueError(f"{name!r} is not a valid Secret name (a DNS-1035 label)")
        return value


class RayJobSection(Section):
    backoff_limit: int = Field(
        2, ge=0, le=100, description="RayJob retries, each on a fresh cluster; the job resumes from shared storage"
    )
    submitter_backoff_limit: int = Field(2, ge=0, le=100, description="retries of the submitter pod alone")
    ttl_seconds_after_finished: int = Field(
        3600, ge=0, le=604_800, description="how long a finished RayJob keeps its cluster for inspection"
    )
    active_deadline_seconds: int | None = Field(None, ge=60, description="give up after this long; null = never")


class KubernetesSection(Section):
    name: str = Field(
        "s3jedi", pattern=DNS_LABEL, max_length=40, description="prefix of every resource name (DNS-1035 label)"
    )
    namespace: str = Field("s3jedi", pattern=DNS_LABEL, max_length=63)
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    service_account: str | None = Field(None, pattern=DNS_LABEL, description="pods' service account (e.g. for IAM)")
    idle_timeout_s: int = Field(120, ge=0, le=86_400, description="autoscaler removes workers idle this long")
    head: HeadGroup = Field(default_factory=HeadGroup)
    cpu_workers: WorkerGroup = Field(default_factory=WorkerGroup)
    gpu_workers: GpuWorkerGroup = Field(default_factory=GpuWorkerGroup)
    submitter: PodResources = Field(default_factory=PodResources, description="the RayJob submitter pod")
    autoscaler: PodResources = Field(default_factory=PodResources, description="the autoscaler sidecar of the head")
    shared_volume: SharedVolume | None = Field(
        default_factory=SharedVolume, description="null = storage only through URIs (then set cluster.storage.*)"
    )
    secrets: SecretsSection = Field(default_factory=SecretsSection)
    rayjob: RayJobSection = Field(default_factory=RayJobSection)

    @model_validator(mode="after")
    def _groups(self) -> KubernetesSection:
        if self.cpu_workers.gpus:
            raise ValueError("cpu_workers.gpus: must be 0 (GPU nodes belong in gpu_workers)")
        if self.gpu_workers.max_replicas and not self.gpu_workers.gpus:
            raise ValueError("gpu_workers.gpus: must be >= 1 when gpu_workers.max_replicas > 0")
        return self


class ClusterSection(Section):
    image: str = Field(
        "s3jedi:0.1.0", min_length=1, description="container image built from the Dockerfile (push it to a registry)"
    )
    packages: Literal["preinstalled", "pip", "image"] = Field(
        "preinstalled",
        description="how submitted jobs get their dependencies: preinstalled = the cluster's Python has them "
        "(our image, or the venv that ran `ray start`); pip = Ray installs the pinned requirements per job; "
        "image = Ray runs the job in `image` (podman on the nodes; the code comes from the image)",
    )
    extras: list[str] = Field(default_factory=list, description="pyproject extras with packages: pip (e.g. [gpu])")
    python: str = Field("python", min_length=1, description="interpreter command of job entrypoints on the head")
    env_vars: dict[str, str] = Field(
        default_factory=lambda: {"S3JEDI_LOG_FORMAT": "json"},
        description="non-secret environment of jobs and pods (secrets: kubernetes.secrets.env)",
    )
    excludes: list[str] = Field(
        default_factory=lambda: [
            ".git",
            ".venv",
            ".cache",
            "outputs",
            "runs",
            "benchmarks/results",
            "**/__pycache__",
            "*.egg-info",
            ".pytest_cache",
            ".ruff_cache",
            ".hypothesis",
            ".import_linter_cache",
        ],
        description="paths of the repo not shipped as a job's working_dir",
    )
    storage: StorageSection = Field(default_factory=StorageSection)
    kubernetes: KubernetesSection = Field(default_factory=KubernetesSection)

    @field_validator("env_vars")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if any(word in name.upper() for word in SECRET_WORDS):
                raise ValueError(
                    f"{name} looks like a credential; job environments are visible to anyone "
                    "who can list jobs, so put it in a Kubernetes Secret (cluster.kubernetes.secrets.env) or the "
                    "nodes' environment"
                )
        return value
