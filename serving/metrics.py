"""Prometheus metrics of the serving app, through ``ray.serve.metrics``.

Ray exports them with its own (``ray_``-prefixed) names on every node's metrics endpoint, next to
Serve's built-in request, latency and queue metrics (``ray_serve_*``), so the one scrape config a
Ray/KubeRay cluster already has covers them; each sample carries the application, deployment and
replica tags. Names here are without Ray's prefix.
"""

from __future__ import annotations

from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_BOUNDARIES_S = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64]


class GatewayMetrics:
    """Per route: requests by status, latency, images returned."""

    def __init__(self):
        self.requests = Counter(
            "s3jedi_serving_requests_total",
            description="HTTP requests by route and status",
            tag_keys=("path", "status"),
        )
        self.latency = Histogram(
            "s3jedi_serving_request_latency_s",
            description="end-to-end request latency in the gateway",
            boundaries=LATENCY_BOUNDARIES_S,
            tag_keys=("path",),
        )
        self.images = Counter(
            "s3jedi_serving_images_generated_total", description="images returned to clients", tag_keys=("path",)
        )

    def record(self, path: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"path": path, "status": str(status)})
        self.latency.observe(seconds, tags={"path": path})


class ModelMetrics:
    """Per model deployment: requests waiting for a batch, batch sizes, cancelled runs."""

    def __init__(self):
        self.queue_length = Gauge(
            "s3jedi_serving_queue_length", description="requests in a replica waiting for their batch to run"
        )
        self.batch_size = Histogram(
            "s3jedi_serving_batch_size", description="requests per @serve.batch call", boundaries=BATCH_BOUNDARIES
        )
        self.cancelled = Counter(
            "s3jedi_serving_cancelled_runs_total", description="pipeline runs stopped because every caller left"
        )
