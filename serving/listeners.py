"""Where a running Serve instance actually accepts connections, asked from its controller.

Dev mode (no API keys) is safe only if nothing outside this machine can reach the app. What the
config asks for is not enough: ``serve.start`` on a cluster whose Serve is already running keeps the
running proxies' bind ("New http_options ... will not be applied"), and a ``serve deploy`` of the
Serve config file runs on whatever proxies the cluster has. So the check reads the options in force
from the Serve controller: the HTTP proxies' host (direct-ingress replica servers bind the same
host) and, when enabled, the gRPC proxies, which always bind every interface.

Serve has no public call for the options in force (``serve.status()`` omits them; the dashboard's
REST API has them but fills unset fields with its own defaults), so this asks the controller actor
the same way Serve's own client does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    kind: str
    """``HTTP`` or ``gRPC``."""
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return self.host == "localhost"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind} {host}:{self.port}"


def serve_listeners() -> list[Listener]:
    """The listeners of the Serve instance of the connected Ray cluster (Serve must be running)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
    from ray.serve._private.utils import is_grpc_enabled
    from ray.serve.config import ProxyLocation

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    http, grpc, location = ray.get(
        [
            controller.get_http_config.remote(),
            controller.get_grpc_config.remote(),
            controller.get_proxy_location.remote(),
        ]
    )
    found = []
    if http.host is not None and location != ProxyLocation.Disabled:
        found.append(Listener("HTTP", http.host, http.port))
    if is_grpc_enabled(grpc):
        found.append(Listener("gRPC", "::", grpc.port))
    return found
