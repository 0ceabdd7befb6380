"""KubeRay documents for a profile: a dev RayCluster, RayJobs for the S3 build and JeDi training, and
the RayService of the endpoint.

The four documents form one deployment on a shared volume (or URIs): the datagen RayJob writes
``<datasets>/<profile>``; the training RayJob trains on that dataset and checkpoints under
``<checkpoints>/<run name>`` (a retried RayJob resumes there); the RayService serves the training run's
export. That wiring is a list of ``--set`` overrides applied before the user's own ``--set`` (which
win), and each RayJob runs with its fully resolved config, mounted from a ConfigMap, so what runs on
the cluster is exactly what was rendered and its hash is in the job's metadata.

Rendering refuses what would fail only later on the cluster: storage that is neither on the shared
volume nor a URI, an actor bigger than any node the autoscaler can add, a GPU type no node has.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer
import yaml
from pydantic import BaseModel

from cluster.jobs import KINDS, entrypoint, git_provenance, job_metadata
from cluster.runtime_env import job_env_vars
from cluster.templates import fill, load
from core import storage
from core.cli_options import USER_ERRORS, SetOpt, fail
from core.config import S3JediConfig, config_hash, load_config, to_yaml
from core.config.cluster import HeadGroup, PodResources, WorkerGroup

DASHBOARD_PORT = 8265
AGENT_PORT = 52365
CONFIG_DIR = "/etc/s3jedi"
API_KEYS_DIR = "/var/run/secrets/s3jedi"
API_KEYS_FILE = "api-keys"
GPU_RESOURCE = "nvidia.com/gpu"
DOCUMENTS = ("raycluster", "rayjob-datagen", "rayjob-train", "rayservice")


class ManifestError(ValueError):
    """A profile that would not run on Kubernetes as configured; ``str()`` names the field."""


@dataclass(frozen=True)
class Storage:
    """``cluster.storage`` as pods see it: every root resolved, on the shared volume or a URI."""

    datasets: str
    checkpoints: str
    subjects: str
    evaluations: str
    models: str | None
    hf_home: str | None


def _on_volume(path: str, mount: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(mount))


def kubernetes_storage(cfg: S3JediConfig) -> Storage:
    s, volume = cfg.cluster.storage, cfg.cluster.kubernetes.shared_volume
    mount = volume.mount_path if volume else None

    def shared(field: str, value: str | None, default: str | None) -> str | None:
        if value is None:
            if mount is None and default is not None:
                raise ManifestError(f"cluster.storage.{field}: required when cluster.kubernetes.shared_volume is null")
            return f"{mount}/{default}" if mount and default else None
        if not storage.is_uri(value) and not (mount and _on_volume(value, mount)):
            raise ManifestError(
                f"cluster.storage.{field}: {value} is neither under the shared volume ({mount}) nor a URI; "
                "each pod would write its own copy and a retried job could not resume"
            )
        return value

    return Storage(
        datasets=shared("datasets", s.datasets, "datasets"),
        checkpoints=shared("checkpoints", s.checkpoints, "runs"),
        subjects=shared("subjects", s.subjects, "subjects"),
        evaluations=shared("evaluations", s.evaluations, "eval"),
        models=shared("models", s.models, None),
        hf_home=shared("hf_home", s.hf_home, "huggingface" if mount else None),
    )


# ---------------------------------------------------------------- what each document runs


def dataset_path(cfg: S3JediConfig, st: Storage) -> str:
    return storage.join(st.datasets, cfg.profile)


def wiring(document: str, cfg: S3JediConfig, st: Storage) -> list[str]:
    """``--set`` overrides that connect a document to the shared storage and to the previous stage."""
    if document == "rayjob-train":
        source = [{"kind": "s3", "path": dataset_path(cfg, st)}]
        return [f"train.jedi.run.storage_path={st.checkpoints}", f"train.jedi.data.sources={json.dumps(source)}"]
    if document == "rayservice":
        export = storage.join(st.checkpoints, cfg.train.jedi.run.name, "export")
        return [
            "serving.host=0.0.0.0",
            f"serving.auth.api_keys_file={API_KEYS_DIR}/{API_KEYS_FILE}",
            f"serving.subjects_store={st.subjects}",
            f"models.jedi={export}",
        ]
    return []


def document_config(document: str, profile: str, user: list[str]) -> S3JediConfig:
    base = load_config(profile, user)
    return load_config(profile, wiring(document, base, kubernetes_storage(base)) + user)


# ---------------------------------------------------------------- checks


def actor_shapes(cfg: S3JediConfig) -> list[tuple[str, float, float]]:
    """``(field, cpus, gpus)`` of every actor or train worker the app sections can ask for."""
    shapes = []

    def walk(model: BaseModel, path: str) -> None:
        fields = type(model).model_fields
        if "num_cpus" in fields and "num_gpus" in fields:
            shapes.append((path, float(model.num_cpus or 0), float(model.num_gpus or 0)))
        if "cpus_per_worker" in fields and "use_gpu" in fields:
            shapes.append((path, model.cpus_per_worker, model.gpus_per_worker if model.use_gpu else 0.0))
        for name in fields:
            child = getattr(model, name)
            if isinstance(child, BaseModel):
                walk(child, f"{path}.{name}" if path else name)

    for section in type(cfg).model_fields:
        child = getattr(cfg, section)
        if section not in ("ray", "cluster") and isinstance(child, BaseModel):
            walk(child, section)
    return shapes


def accelerator_types(cfg: S3JediConfig) -> list[tuple[str, str]]:
    found = []

    def walk(model: BaseModel, path: str) -> None:
        for name in type(model).model_fields:
            child = getattr(model, name)
            if name == "accelerator_type" and isinstance(child, str):
                found.append((f"{path}.{name}", child))
            elif isinstance(child, BaseModel):
                walk(child, f"{path}.{name}")

    for section in type(cfg).model_fields:
        child = getattr(cfg, section)
        if section != "cluster" and isinstance(child, BaseModel):
            walk(child, section)
    return found


def check_fits(cfg: S3JediConfig) -> None:
    """Every actor shape fits on a node of a group the autoscaler can grow, on the right GPU type."""
    k = cfg.cluster.kubernetes
    groups = {n: g for n, g in (("cpu_workers", k.cpu_workers), ("gpu_workers", k.gpu_workers)) if g.max_replicas}
    for path, cpus, gpus in actor_shapes(cfg):
        if not any(g.cpu >= cpus and g.gpus >= gpus for g in groups.values()):
            sizes = ", ".join(f"{n}: {g.cpu:g} CPU / {g.gpus} GPU" for n, g in groups.items()) or "no worker groups"
            raise ManifestError(
                f"{path}: one actor needs {cpus:g} CPU / {gpus:g} GPU, more than any node of cluster.kubernetes "
                f"({sizes}); it would wait forever"
            )
    gpu_type = k.gpu_workers.accelerator_type
    for path, wanted in accelerator_types(cfg):
        if gpu_type is not None and wanted != gpu_type:
            raise ManifestError(
                f"{path}: asks for {wanted} GPUs but cluster.kubernetes.gpu_workers.accelerator_type is {gpu_type}"
            )


# ---------------------------------------------------------------- pods


def cpu_quantity(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{round(cores * 1000)}m"


def memory_quantity(gib: float) -> str:
    return f"{int(gib)}Gi" if float(gib).is_integer() else f"{round(gib * 1024)}Mi"


def resources(pod: PodResources, gpus: int = 0) -> dict:
    """Requests equal limits: the Ray node's CPUs, memory and GPUs are what the kubelet guarantees."""
    amounts = {"cpu": cpu_quantity(pod.cpu), "memory": memory_quantity(pod.memory_gib)}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def probe(path: str, port: int, initial_delay_s: int, failure_threshold: int) -> dict:
    return fill("probe", path=path, port=port, initial_delay_s=initial_delay_s, failure_threshold=failure_threshold)


@dataclass(frozen=True)
class Mounts:
    """Volumes added to pods beyond the ones every Ray pod has."""

    volumes: tuple[dict, ...] = ()
    mounts: tuple[dict, ...] = ()

    def __add__(self, other: Mounts) -> Mounts:
        return Mounts(self.volumes + other.volumes, self.mounts + other.mounts)


def config_mount(configmap: str) -> Mounts:
    return Mounts(
        ({"name": "s3jedi-config", "configMap": {"name": configmap}},),
        ({"name": "s3jedi-config", "mountPath": CONFIG_DIR, "readOnly": True},),
    )


def api_keys_mount(secret: str) -> Mounts:
    volume = {
        "name": "api-keys",
        "secret": {
            "secretName": secret,
            "items": [{"key": API_KEYS_FILE, "path": API_KEYS_FILE}],
            "defaultMode": 0o440,
        },
    }
    return Mounts((volume,), ({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True},))


def ray_pod(
    cfg: S3JediConfig, st: Storage, group: HeadGroup | WorkerGroup, component: str, *, serving: bool, extra: Mounts
) -> dict:
    k = cfg.cluster.kubernetes
    head = isinstance(group, HeadGroup)
    gpus = 0 if head else group.gpus
    ports = [{"containerPort": 8080, "name": "metrics"}]
    if head:
        ports += [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ]
    if serving:
        ports.append({"containerPort": cfg.serving.port, "name": "serve"})
    alive = ("/api/gcs_healthz", DASHBOARD_PORT) if head else ("/api/local_raylet_healthz", AGENT_PORT)
    # A Serve worker is ready when its proxy is (KubeRay routes the serve Service by that too).
    ready = ("/-/healthz", cfg.serving.port) if serving and not head else alive
    volumes = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": memory_quantity(group.shm_gib)}},
        {"name": "ray-logs", "emptyDir": {}},
    ]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "ray-logs", "mountPath": "/tmp/ray"}]
    if k.shared_volume:
        volumes.append({"name": "shared", "persistentVolumeClaim": {"claimName": k.shared_volume.claim_name}})
        mounts.append({"name": "shared", "mountPath": k.shared_volume.mount_path})
    env = job_env_vars(cfg, st.models, st.hf_home)
    return fill(
        "ray-pod",
        component=component,
        profile=label_value(cfg.profile),
        service_account=k.service_account,
        pod_security=load("pod-security"),
        node_selector=None if head else (group.node_selector or None),
        tolerations=[{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}] if gpus else None,
        container_name="ray-head" if head else "ray-worker",
        image=cfg.cluster.image,
        image_pull_policy=k.image_pull_policy,
        env=[{"name": n, "value": v} for n, v in env.items()] or None,
        env_from=[{"secretRef": {"name": s, "optional": True}} for s in k.secrets.env] or None,
        ports=ports,
        resources=resources(group, gpus),
        container_security=load("container-security"),
        liveness_probe=probe(*alive, initial_delay_s=30, failure_threshold=12),
        readiness_probe=probe(*ready, initial_delay_s=10, failure_threshold=3),
        volume_mounts=mounts + list(extra.mounts),
        volumes=volumes + list(extra.volumes),
    )


def cluster_spec(cfg: S3JediConfig, st: Storage, *, serving: bool, head_extra: Mounts, all_extra: Mounts) -> dict:
    k = cfg.cluster.kubernetes
    groups = [
        fill(
            "worker-group",
            group_name=name,
            min_replicas=group.min_replicas,
            max_replicas=group.max_replicas,
            pod=ray_pod(cfg, st, group, f"{name}-worker", serving=serving, extra=all_extra),
        )
        for name, group in (("cpu", k.cpu_workers), ("gpu", k.gpu_workers))
        if group.max_replicas
    ]
    return fill(
        "cluster-spec",
        ray_version=version("ray"),
        idle_timeout_s=k.idle_timeout_s,
        image_pull_policy=k.image_pull_policy,
        autoscaler_resources=resources(k.autoscaler),
        container_security=load("container-security"),
        ray_token_secret=k.secrets.ray_token,
        head_pod=ray_pod(cfg, st, k.head, "head", serving=serving, extra=head_extra + all_extra),
        worker_groups=groups,
    )


# ---------------------------------------------------------------- documents


def label_value(text: str) -> str:
    """A Kubernetes label value (<= 63 of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.") or "none"


def meta(cfg: S3JediConfig, name: str, component: str) -> dict:
    return {
        "name": name,
        "namespace": cfg.cluster.kubernetes.namespace,
        "labels": {
            "app.kubernetes.io/name": "s3jedi",
            "app.kubernetes.io/component": component,
            "s3jedi.io/profile": label_value(cfg.profile),
        },
        "annotations": {
            "s3jedi.io/config-hash": config_hash(cfg),
            "s3jedi.io/git-commit": git_provenance()["s3jedi.git_commit"],
        },
    }


def raycluster(cfg: S3JediConfig) -> list[dict]:
    st = kubernetes_storage(cfg)
    spec = cluster_spec(cfg, st, serving=False, head_extra=Mounts(), all_extra=Mounts())
    return [fill("raycluster", **meta(cfg, cfg.cluster.kubernetes.name, "raycluster"), cluster_spec=spec)]


def rayjob(cfg: S3JediConfig, job: str) -> list[dict]:
    """A RayJob running ``KINDS[job]`` with the resolved config, plus the ConfigMap that carries it."""
    k, st, kind = cfg.cluster.kubernetes, kubernetes_storage(cfg), KINDS[job]
    name = f"{k.name}-{job}"
    configmap = f"{name}-config"
    out = dataset_path(cfg, st) if kind.out_root == "datasets" else None
    config_yaml = f"# config hash {config_hash(cfg)}\n{to_yaml(cfg)}"
    submitter = fill(
        "submitter-pod",
        service_account=k.service_account,
        pod_security=load("pod-security"),
        image=cfg.cluster.image,
        image_pull_policy=k.image_pull_policy,
        resources=resources(k.submitter),
        container_security=load("container-security"),
    )
    spec = cluster_spec(cfg, st, serving=False, head_extra=config_mount(configmap), all_extra=Mounts())
    job_doc = fill(
        "rayjob",
        **meta(cfg, name, f"rayjob-{job}"),
        entrypoint=entrypoint(kind, cfg, f"{CONFIG_DIR}/config.yaml", out),
        job_metadata=job_metadata(kind, cfg, out),
        ttl_seconds_after_finished=k.rayjob.ttl_seconds_after_finished,
        backoff_limit=k.rayjob.backoff_limit,
        active_deadline_seconds=k.rayjob.active_deadline_seconds,
        submitter_backoff_limit=k.rayjob.submitter_backoff_limit,
        submitter_pod=submitter,
        cluster_spec=spec,
    )
    return [fill("configmap", **meta(cfg, configmap, f"rayjob-{job}"), config_yaml=config_yaml), job_doc]


def serve_config(cfg: S3JediConfig) -> dict:
    """The Serve config of ``s3jedi serve build``, checked against Ray's ``ServeDeploySchema``."""
    from ray.serve.schema import ServeDeploySchema

    from serving.app import serve_config as build

    document = build(cfg)
    ServeDeploySchema.model_validate(document)
    return document


def rayservice(cfg: S3JediConfig) -> list[dict]:
    k, st = cfg.cluster.kubernetes, kubernetes_storage(cfg)
    keys = api_keys_mount(k.secrets.api_keys)
    spec = cluster_spec(cfg, st, serving=True, head_extra=Mounts(), all_extra=keys)
    document = yaml.safe_dump(serve_config(cfg), sort_keys=False)
    return [fill("rayservice", **meta(cfg, f"{k.name}-serve", "rayservice"), serve_config=document, cluster_spec=spec)]


BUILDERS = {
    "raycluster": raycluster,
    "rayjob-datagen": lambda cfg: rayjob(cfg, "datagen"),
    "rayjob-train": lambda cfg: rayjob(cfg, "train"),
    "rayservice": rayservice,
}


def render(profile: str, user_overrides: list[str] | None = None) -> dict[str, list[dict]]:
    """``{document name: [Kubernetes objects]}`` for ``profile`` plus ``--set`` overrides."""
    user = list(user_overrides or [])
    rendered = {}
    for name in DOCUMENTS:
        cfg = document_config(name, profile, user)
        check_fits(cfg)
        rendered[name] = BUILDERS[name](cfg)
    return rendered


class _Dumper(yaml.SafeDumper):
    """Readable manifests: no anchors for shared sub-trees, multi-line strings as literal blocks
    (the embedded Serve config and the ConfigMap's config stay legible YAML inside YAML)."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def to_text(objects: list[dict]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=120)


# ---------------------------------------------------------------- CLI

app = typer.Typer(help="KubeRay manifests (RayCluster, RayJobs, RayService) from a profile.", no_args_is_help=True)


@app.command("render")
def render_cmd(
    profile: Annotated[
        str, typer.Option("--profile", "--config", "-c", help="profile name in configs/ or a YAML path")
    ] = "tiny",
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write one file per document here")] = None,
) -> None:
    """Render the manifests; without --out, print them as one YAML stream (kubectl apply -f -)."""
    try:
        rendered = render(profile, set_)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    if out is None:
        typer.echo("---\n".join(to_text(objects) for objects in rendered.values()), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    header = f"# Rendered by `s3jedi manifests render --profile {profile}`; secrets are referenced, never included.\n"
    for name, objects in rendered.items():
        (out / f"{name}.yaml").write_text(header + to_text(objects))
        typer.echo(f"wrote {out / name}.yaml")
