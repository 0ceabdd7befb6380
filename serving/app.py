"""Assembling the Serve application from the config: locally, or as a Serve config file.

Three deployments: ``Gateway`` (HTTP ingress) → ``Personalizer`` (JeDi) and ``Generator``
(text-to-image + fine-tuned subjects). Their resources, concurrency limits and autoscaling come
from ``serving.<deployment>`` and are written the same way into the Serve config file
(``s3jedi serve build``), which ``serve deploy`` or a RayService's ``serveConfigV2`` takes as is;
that file names ``serving.app:build_app`` with the resolved config as its arguments, so the cluster
runs exactly what the config says.
"""

from __future__ import annotations

from collections.abc import Callable

from ray import serve
from ray.serve import Application

from core.config import S3JediConfig, validate
from core.logs import get_logger, ray_log_level
from core.ray_runtime import init_ray
from serving.auth import KeyRing, check_dev_mode
from serving.framing import CONTROLLER_OPTIONS
from serving.gateway import Gateway
from serving.listeners import serve_listeners
from serving.models import Generator, Personalizer

log = get_logger("serving.app")
IMPORT_PATH = "serving.app:build_app"
DEPLOYMENTS = {"gateway": Gateway, "personalizer": Personalizer, "generator": Generator}
PROXY_TIMEOUT_MARGIN_S = 5.0
# What the replicas read; the rest of the config keeps its defaults there, and the file stays readable.
SERVED_SECTIONS = {"profile", "seed", "home", "models", "serving"}


def deployment_options(cfg: S3JediConfig, section: str) -> dict:
    replica = getattr(cfg.serving, section)
    options: dict = {
        "max_ongoing_requests": replica.max_ongoing_requests,
        "max_queued_requests": replica.max_queued_requests,
        "backpressure_config": {"status_code": 503, "retry_after_s": cfg.serving.retry_after_s},
        "ray_actor_options": {"num_cpus": replica.num_cpus, "num_gpus": replica.num_gpus},
    }
    if replica.max_replicas > replica.min_replicas:
        options["autoscaling_config"] = {
            "min_replicas": replica.min_replicas,
            "max_replicas": replica.max_replicas,
            "target_ongoing_requests": replica.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = replica.max_replicas
    return options


def application(cfg: S3JediConfig) -> Application:
    config = cfg.model_dump(mode="json")
    bound = {
        name: DEPLOYMENTS[name].options(**deployment_options(cfg, name)).bind(config)
        for name in ("personalizer", "generator")
    }
    return Gateway.options(**deployment_options(cfg, "gateway")).bind(bound["personalizer"], bound["generator"], config)


def build_app(args: dict) -> Application:
    """Application builder named by the Serve config file (``import_path``)."""
    return application(validate(dict(args).get("config") or {}, source="serve application args.config"))


def http_options(cfg: S3JediConfig) -> dict:
    s = cfg.serving
    # Serve's own timeout is a backstop behind the gateway's (which answers 504 JSON and cancels).
    return {"host": s.host, "port": s.port, "request_timeout_s": s.request_timeout_s + PROXY_TIMEOUT_MARGIN_S}


def serve_config(cfg: S3JediConfig) -> dict:
    """A Serve config file (``ServeDeploySchema``) for this config."""
    return {
        "proxy_location": "EveryNode",
        "http_options": http_options(cfg),
        "controller_options": CONTROLLER_OPTIONS,
        "applications": [
            {
                "name": cfg.serving.app_name,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"config": cfg.model_dump(mode="json", include=SERVED_SECTIONS)},
                "deployments": [
                    {"name": cls.name, **deployment_options(cfg, section)} for section, cls in DEPLOYMENTS.items()
                ],
            }
        ],
    }


def start(cfg: S3JediConfig, on_ray_started: Callable[[], None] | None = None) -> str:
    """Start (or join) Ray, start Serve on ``serving.host:port`` and deploy; returns the base URL.
    ``on_ray_started`` runs once Ray is up, before Serve starts (the CLI's signal handler).

    Without API keys the listeners in force are checked after ``serve.start`` and before anything is
    deployed: a Serve instance that was already running keeps its own bind, whatever the config says."""
    keys = KeyRing.load(cfg.serving.auth)
    check_dev_mode(keys, cfg.serving.host)
    log.info(keys.describe())
    init_ray(cfg.ray)
    if on_ray_started is not None:
        on_ray_started()
    logging_config = {"log_level": ray_log_level()}  # Serve's INFO lines and access log only when verbose
    serve.start(http_options=http_options(cfg), controller_options=CONTROLLER_OPTIONS, logging_config=logging_config)
    check_dev_mode(keys, cfg.serving.host, serve_listeners())
    serve.run(application(cfg), name=cfg.serving.app_name, route_prefix="/", logging_config=logging_config)
    return f"http://{cfg.serving.host}:{cfg.serving.port}/"
