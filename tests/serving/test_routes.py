"""The route table: every route of the app is declared there, and model time cannot be reached
through a route without a rate limit."""

from __future__ import annotations

import httpx
import pytest

from serving import routes
from serving.errors import ApiError
from serving.routes import ROUTES, Deployment, RateClass, Route


def test_a_route_that_spends_model_time_must_declare_a_rate_limit():
    with pytest.raises(ValueError, match="spends personalizer time but declares no rate_limit"):
        Route("POST", "/v1/x", routes.personalize, "x", None, spends=Deployment.PERSONALIZER)
    with pytest.raises(ValueError, match="without an API key"):
        Route(
            "POST",
            "/v1/x",
            routes.personalize,
            "x",
            None,
            auth=False,
            rate_limit=RateClass.GENERATION,
            spends=Deployment.PERSONALIZER,
        )
    spending = [r for r in ROUTES if r.spends is not None]
    assert {r.path for r in spending} == {"/v1/personalize", "/v1/personalize/upload", "/v1/generate"}
    assert all(r.rate_limit is RateClass.GENERATION and r.auth for r in spending)


def test_model_time_through_an_undeclared_route_fails_closed():
    """A handler that reaches a model from a route not declared to spend it answers 500 (logged)
    before any work is queued, instead of running without a rate limit."""
    models = routes.find("/v1/models")
    for route in (None, models, routes.find("/v1/generate")):
        token = routes.current.set(route)
        try:
            with pytest.raises(ApiError) as info:
                routes.check_spending(Deployment.PERSONALIZER)
            assert info.value.detail.status == 500
        finally:
            routes.current.reset(token)
    token = routes.current.set(routes.find("/v1/personalize"))
    routes.check_spending(Deployment.PERSONALIZER)
    routes.current.reset(token)


def test_the_app_serves_exactly_the_table(served):
    spec = httpx.get(f"{served.url}/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert documented == {(r.method, r.path) for r in ROUTES if r.in_schema}
    for route in ROUTES:
        if route.in_schema:
            operation = spec["paths"][route.path][route.method.lower()]
            assert bool(operation.get("security")) == route.auth, route.path
