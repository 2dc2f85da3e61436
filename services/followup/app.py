"""followup's HTTP API: its view of what is open per customer."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.compose import ServiceRuntime
from runtime.web import add_customer_view_route, create_app
from services.followup.domain import FollowupProjection


def create_followup_app(runtime: ServiceRuntime) -> FastAPI:
    """followup's app over a composed runtime."""
    app = create_app("Baton followup", "Callback promises, deadlines and escalations.", runtime)
    add_customer_view_route(
        app,
        runtime,
        "/v1/followup/customers/{customer_id}",
        FollowupProjection.view,
        "followup's view of a customer: open contacts and owner",
    )
    return app
