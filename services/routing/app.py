"""routing's HTTP API: its ownership view."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.compose import ServiceRuntime
from runtime.web import add_customer_view_route, create_app
from services.routing.domain import OwnershipProjection


def create_routing_app(runtime: ServiceRuntime) -> FastAPI:
    """routing's app over a composed runtime."""
    app = create_app(
        "Baton routing", "Hand-offs, the agent directory and the ownership view.", runtime
    )
    add_customer_view_route(
        app,
        runtime,
        "/v1/ownership/{customer_id}",
        OwnershipProjection.view,
        "routing's view of a customer's owner",
    )
    return app
