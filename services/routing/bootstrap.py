"""routing's composition root."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from runtime.compose import ServiceRuntime, build_runtime
from runtime.config import Settings
from runtime.domain.projections import DirectoryProjection, OwnershipProjection
from services.routing.app import create_routing_app
from services.routing.handoffs import HandoffRouter


def bootstrap(settings: Settings, runtime: ServiceRuntime | None = None) -> FastAPI:
    """Compose routing. Tests may pass a runtime built from fakes."""
    runtime = runtime or build_runtime("routing", settings)
    router = HandoffRouter(
        runtime,
        runtime.open_deadlines(),
        offer_ttl=timedelta(seconds=settings.offer_ttl_seconds),
        after_append=runtime.after_append,
        timer_interval=settings.timer_interval_seconds,
    )
    runtime.add_consumer(OwnershipProjection(), reactor=router.react)
    runtime.add_consumer(DirectoryProjection())
    runtime.add_background(router.run_timer)
    return create_routing_app(runtime)
