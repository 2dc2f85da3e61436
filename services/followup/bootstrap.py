"""followup's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.compose import ServiceRuntime, build_runtime
from runtime.config import Settings
from runtime.domain.projections import DirectoryProjection
from runtime.policy import load_policies
from services.followup.app import create_followup_app
from services.followup.domain import FollowupProjection
from services.followup.ladder import PromiseLadder
from services.followup.notifications import Notifier
from services.followup.webhook_routes import add_webhook_routes


def bootstrap(settings: Settings, runtime: ServiceRuntime | None = None) -> FastAPI:
    """Compose followup. Tests may pass a runtime built from fakes."""
    runtime = runtime or build_runtime("followup", settings)
    deadlines = runtime.open_deadlines()
    notifier = Notifier(runtime.views, deadlines, runtime.clock, settings)
    ladder = PromiseLadder(
        runtime,
        deadlines,
        load_policies(settings),
        notifier,
        after_append=runtime.relay.publish_now,
        timer_interval=settings.timer_interval_seconds,
    )
    runtime.add_consumer(FollowupProjection(), reactor=ladder.react)
    runtime.add_consumer(DirectoryProjection())
    runtime.add_background(ladder.run_timer)
    runtime.add_background(notifier.run)
    app = create_followup_app(runtime)
    add_webhook_routes(app, notifier, settings.default_tenant)
    return app
