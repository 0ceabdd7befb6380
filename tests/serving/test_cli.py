"""``s3jedi serve``: the Serve config file a RayService embeds, and start-up refusals."""

from __future__ import annotations

import importlib

import yaml
from ray import serve
from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from cluster.cli import app
from core.config import validate

runner = CliRunner()


def test_help():
    for args in (["serve", "--help"], ["serve", "build", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_build_writes_a_serve_config_that_ray_accepts(tmp_path):
    out = tmp_path / "serve.yaml"
    result = runner.invoke(
        app,
        ["serve", "build", "-o", str(out), "-c", "sd14", "--set", "serving.personalizer.max_replicas=6"],
    )
    assert result.exit_code == 0, result.output
    schema = ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    assert schema.http_options.host == "0.0.0.0" and schema.http_options.request_timeout_s == 125.0
    (application,) = schema.applications
    assert application.import_path == "serving.app:build_app" and application.route_prefix == "/"
    deployments = {d.name: d for d in application.deployments}
    assert set(deployments) == {"Gateway", "Personalizer", "Generator"}
    personalizer = deployments["Personalizer"]
    assert personalizer.ray_actor_options.num_gpus == 1
    assert personalizer.autoscaling_config["max_replicas"] == 6 and personalizer.max_queued_requests == 64
    assert personalizer.backpressure_config.retry_after_s == 2
    assert deployments["Gateway"].num_replicas == 1
    cfg = validate(application.args["config"])
    assert cfg.models.jedi == "/mnt/s3jedi/runs/jedi-sd14/export" and cfg.serving.limits.max_side == 768
    assert "api_keys" not in out.read_text().replace("api_keys_env", "").replace("api_keys_file", "")

    module, attr = application.import_path.split(":")
    built = getattr(importlib.import_module(module), attr)(application.args)
    assert isinstance(built, serve.Application)


def test_serving_without_keys_off_loopback_is_refused_before_starting(monkeypatch):
    monkeypatch.delenv("S3JEDI_API_KEYS", raising=False)
    result = runner.invoke(app, ["serve", "--set", "serving.host=0.0.0.0"])
    assert result.exit_code == 2
    assert "serving.host: 0.0.0.0 is not a loopback address" in result.output
    assert "Started a local Ray" not in result.output
