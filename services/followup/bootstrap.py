"""followup's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.compose import ServiceRuntime, build_runtime
from runtime.config import Settings
from services.followup.app import create_followup_app
from services.followup.domain import FollowupProjection


def bootstrap(settings: Settings, runtime: ServiceRuntime | None = None) -> FastAPI:
    """Compose followup. Tests may pass a runtime built from fakes."""
    runtime = runtime or build_runtime("followup", settings, [FollowupProjection()])
    return create_followup_app(runtime)
