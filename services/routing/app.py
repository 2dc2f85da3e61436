"""routing's HTTP API: its ownership and directory views."""

from fastapi import FastAPI

from runtime.compose import ServiceRuntime
from runtime.domain.projections import DirectoryProjection, OwnershipProjection
from runtime.web import add_customer_view_route, add_tenant_view_route, create_app


def create_routing_app(runtime: ServiceRuntime) -> FastAPI:
    """routing's app over a composed runtime."""
    app = create_app("Baton routing", "Hand-offs, the agent directory and the ownership view.", runtime)
    add_customer_view_route(
        app, runtime, "/v1/ownership/{customer_id}", OwnershipProjection.view, "routing's view of a customer's owner"
    )
    add_tenant_view_route(
        app, runtime, "/v1/directory", DirectoryProjection.view, "directory", "routing's view of the agent directory"
    )
    return app
