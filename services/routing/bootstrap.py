"""routing's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.compose import ServiceRuntime, build_runtime
from runtime.config import Settings
from services.routing.app import create_routing_app
from services.routing.domain import OwnershipProjection


def bootstrap(settings: Settings, runtime: ServiceRuntime | None = None) -> FastAPI:
    """Compose routing. Tests may pass a runtime built from fakes."""
    runtime = runtime or build_runtime("routing", settings, [OwnershipProjection()])
    return create_routing_app(runtime)
