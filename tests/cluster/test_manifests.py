"""`s3jedi manifests render`: every profile renders KubeRay documents that pass the CRD schemas, carry a
valid Serve config, reference secrets, run non-root with pinned resources, and resume from shared storage."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from cluster.cli import app
from cluster.manifests import CONFIG_DIR, ManifestError, document_config, render
from core.config import config_hash, load_config
from serving.app import serve_config

PROFILES = ("tiny", "sd14", "sdxl")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def rendered():
    return {profile: render(profile) for profile in PROFILES}


def all_objects(documents: dict[str, list[dict]]) -> list[dict]:
    return [obj for objects in documents.values() for obj in objects]


def cluster_specs(documents):
    for obj in all_objects(documents):
        spec = obj["spec"] if obj["kind"] != "ConfigMap" else None
        if obj["kind"] == "RayCluster":
            yield obj, spec
        elif obj["kind"] == "RayJob":
            yield obj, spec["rayClusterSpec"]
        elif obj["kind"] == "RayService":
            yield obj, spec["rayClusterConfig"]


def pod_templates(documents):
    for obj, spec in cluster_specs(documents):
        yield obj, spec["headGroupSpec"]["template"]
        for group in spec["workerGroupSpecs"]:
            yield obj, group["template"]
        if obj["kind"] == "RayJob":
            yield obj, obj["spec"]["submitterPodTemplate"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_document_passes_the_kuberay_schemas(rendered, kuberay_validate, profile):
    objects = all_objects(rendered[profile])
    assert kuberay_validate.validate_documents(objects) == []
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "ConfigMap", "RayCluster", "RayJob", "RayJob", "RayService"]
    for obj in objects:
        name = obj["metadata"]["name"]
        assert DNS_1035.match(name) and len(name) <= 63, name
        assert obj["metadata"]["namespace"] == "s3jedi"


def test_the_schema_check_catches_wrong_fields(rendered, kuberay_validate):
    broken = copy.deepcopy(rendered["tiny"]["raycluster"][0])
    broken["spec"]["workerGroupSpecs"][0]["minReplicas"] = "one"
    broken["spec"]["headGroupSpec"]["replicas"] = 1
    errors = kuberay_validate.validate_documents([broken])
    assert any("minReplicas: 'one' is not of type 'integer'" in e for e in errors), errors


def test_cli_writes_one_file_per_document(tmp_path, kuberay_validate):
    result = CliRunner().invoke(app, ["manifests", "render", "--profile", "sd14", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert files == ["raycluster.yaml", "rayjob-datagen.yaml", "rayjob-train.yaml", "rayservice.yaml"]
    for path in tmp_path.glob("*.yaml"):
        assert kuberay_validate.validate_file(path) == [], path
        assert "&id" not in path.read_text(), "no YAML anchors: kubectl users read these files"


def test_cli_prints_one_stream_without_out():
    result = CliRunner().invoke(app, ["manifests", "render", "-c", "tiny", "--set", "cluster.kubernetes.name=dev"])
    assert result.exit_code == 0, result.output
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(result.output) if d]
    assert names == ["dev", "dev-datagen-config", "dev-datagen", "dev-train-config", "dev-train", "dev-serve"]


@pytest.mark.parametrize("profile", PROFILES)
def test_the_rayservice_embeds_the_serve_config_of_serve_build(rendered, profile):
    service = rendered[profile]["rayservice"][0]
    document = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(document)
    cfg = document_config("rayservice", profile, [])
    assert document == serve_config(cfg), "the same builder as `s3jedi serve build`, on the wired config"
    served = document["applications"][0]["args"]["config"]
    assert served["serving"]["host"] == "0.0.0.0"
    assert served["models"]["jedi"] == f"/mnt/s3jedi/runs/{cfg.train.jedi.run.name}/export", "serves the trained export"
    keys_file = served["serving"]["auth"]["api_keys_file"]
    spec = service["spec"]["rayClusterConfig"]
    for pod in [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]:
        container = pod["spec"]["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        secret = next(v for v in pod["spec"]["volumes"] if v["name"] == "api-keys")["secret"]
        assert secret["secretName"] == "s3jedi-api-keys"
        assert keys_file == f"{mounts['api-keys']}/{secret['items'][0]['path']}"
        assert {"containerPort": 8000, "name": "serve"} in container["ports"]


def test_serving_probes_use_the_serve_proxy_and_ray_health_endpoints(rendered):
    spec = rendered["tiny"]["rayservice"][0]["spec"]["rayClusterConfig"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["livenessProbe"]["httpGet"] == {"path": "/api/gcs_healthz", "port": 8265}
    for group in spec["workerGroupSpecs"]:
        worker = group["template"]["spec"]["containers"][0]
        assert worker["livenessProbe"]["httpGet"] == {"path": "/api/local_raylet_healthz", "port": 52365}
        assert worker["readinessProbe"]["httpGet"] == {"path": "/-/healthz", "port": 8000}
    job_workers = rendered["tiny"]["rayjob-train"][1]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert job_workers[0]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == 52365


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pod_is_non_root_with_requests_equal_to_limits(rendered, profile):
    templates = list(pod_templates(rendered[profile]))
    assert len(templates) == 3 * 4 + 2  # 4 clusters × (head + 2 groups) + 2 submitters
    for _, template in templates:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            assert requests == limits and {"cpu", "memory"} <= set(limits)
    for _, spec in cluster_specs(rendered[profile]):
        autoscaler = spec["autoscalerOptions"]
        assert autoscaler["resources"]["requests"] == autoscaler["resources"]["limits"]
        assert autoscaler["securityContext"]["allowPrivilegeEscalation"] is False


def test_gpu_group_sizes_come_from_the_profile(rendered):
    cfg = load_config("sd14")
    spec = rendered["sd14"]["raycluster"][0]["spec"]
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    pod = gpu["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    k = cfg.cluster.kubernetes.gpu_workers
    assert limits == {"cpu": str(int(k.cpu)), "memory": f"{int(k.memory_gib)}Gi", "nvidia.com/gpu": str(k.gpus)}
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (k.min_replicas, k.max_replicas)
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["enableInTreeAutoscaling"] is True and spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_secrets_are_referenced_and_never_rendered(monkeypatch):
    secrets = {"RAY_AUTH_TOKEN": "t0ken" * 12, "S3JEDI_API_KEYS": "k3y" * 12, "AWS_SECRET_ACCESS_KEY": "s3cr3t" * 8}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    documents = render("sd14")
    text = yaml.safe_dump_all(all_objects(documents))
    assert not [name for name, value in secrets.items() if value in text]
    assert all(o["kind"] != "Secret" for o in all_objects(documents))
    for obj, spec in cluster_specs(documents):
        assert spec["authOptions"] == {"mode": "token", "secretName": "s3jedi-ray-token"}, obj["metadata"]["name"]
    for _, template in pod_templates(documents):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                assert not re.search("TOKEN|SECRET|PASSWORD|KEY", env["name"]), env
            for source in container.get("envFrom", []):
                assert source == {"secretRef": {"name": "s3jedi-storage", "optional": True}}


def test_rayjobs_chain_the_dataset_into_training_and_resume_from_shared_storage(rendered, tmp_path):
    configmap, job = rendered["sd14"]["rayjob-datagen"]
    train_configmap, train_job = rendered["sd14"]["rayjob-train"]
    assert (
        job["spec"]["entrypoint"]
        == f"python -m datagen --config {CONFIG_DIR}/config.yaml --out /mnt/s3jedi/datasets/sd14"
    )
    assert train_job["spec"]["entrypoint"] == f"python -m training jedi --config {CONFIG_DIR}/config.yaml"
    for cm, rayjob in ((configmap, job), (train_configmap, train_job)):
        spec = rayjob["spec"]
        assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 2
        assert spec["ttlSecondsAfterFinished"] == 3600 and spec["submitterConfig"] == {"backoffLimit": 2}
        head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        mounted = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
        volume = next(v for v in head["volumes"] if v["name"] == "s3jedi-config")
        assert volume["configMap"]["name"] == cm["metadata"]["name"] and mounted["s3jedi-config"] == CONFIG_DIR
        assert mounted["shared"] == "/mnt/s3jedi"
        path = tmp_path / f"{cm['metadata']['name']}.yaml"
        path.write_text(cm["data"]["config.yaml"])
        cfg = load_config(path)
        assert (
            config_hash(cfg)
            == spec["metadata"]["s3jedi.config_hash"]
            == cm["metadata"]["annotations"]["s3jedi.io/config-hash"]
        )
    trained = load_config(tmp_path / f"{train_configmap['metadata']['name']}.yaml").train.jedi
    assert [(s.kind, s.path) for s in trained.data.sources] == [("s3", "/mnt/s3jedi/datasets/sd14")]
    assert trained.run.storage_path == "/mnt/s3jedi/runs"


def test_user_overrides_win_over_the_wiring():
    cfg = document_config("rayjob-train", "tiny", ["train.jedi.data.sources=[{kind: folder, path: /mnt/s3jedi/mine}]"])
    assert cfg.train.jedi.data.sources[0].path == "/mnt/s3jedi/mine"
    assert cfg.train.jedi.run.storage_path == "/mnt/s3jedi/runs"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["cluster.storage.datasets=/data/s3"],
            "cluster.storage.datasets: /data/s3 is neither under the shared volume",
        ),
        (["cluster.kubernetes.shared_volume=null"], "cluster.storage.datasets: required when cluster.kubernetes"),
        (
            ["datagen.collages.resources.num_gpus=2"],
            "datagen.collages.resources: one actor needs 0.25 CPU / 2 GPU, more than any node",
        ),
        (["cluster.kubernetes.gpu_workers.max_replicas=0", "serving.personalizer.num_gpus=1"], "serving.personalizer"),
        (
            ["train.jedi.scaling.accelerator_type=A100", "cluster.kubernetes.gpu_workers.accelerator_type=L4"],
            "train.jedi.scaling.accelerator_type: asks for A100 GPUs but cluster.kubernetes.gpu_workers",
        ),
    ],
)
def test_what_would_fail_on_the_cluster_fails_at_render(overrides, message):
    with pytest.raises(ManifestError) as err:
        render("tiny", overrides)
    assert str(err.value).startswith(message), str(err.value)


def test_uri_storage_needs_no_shared_volume(kuberay_validate):
    roots = ["datasets", "checkpoints", "subjects", "evaluations"]
    overrides = ["cluster.kubernetes.shared_volume=null"] + [f"cluster.storage.{r}=s3://bucket/{r}" for r in roots]
    documents = render("tiny", overrides)
    assert kuberay_validate.validate_documents(all_objects(documents)) == []
    assert documents["rayjob-datagen"][1]["spec"]["entrypoint"].endswith("--out s3://bucket/datasets/tiny")
    for _, template in pod_templates(documents):
        assert all(v["name"] != "shared" for v in template["spec"].get("volumes", []))
