"""followup's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.compose import Scraper, ServiceRuntime, build_runtime
from runtime.config import Settings
from runtime.domain.projections import DirectoryProjection
from runtime.policy import load_policies
from runtime.telemetry import Family, counter
from services.followup.app import create_followup_app
from services.followup.domain import FollowupProjection
from services.followup.ladder import PromiseLadder
from services.followup.notifications import Notifier
from services.followup.webhook_routes import add_webhook_routes


def notifier_metrics(notifier: Notifier) -> Scraper:
    """Webhook delivery counters of this process."""

    async def scrape() -> list[Family]:
        totals: dict[tuple[str, ...], float] = {
            ("delivered",): float(notifier.delivered_total),
            ("failed",): float(notifier.failed_total),
            ("no_endpoint",): float(notifier.no_endpoint_total),
        }
        return [
            counter("baton_webhook_deliveries", "Webhook notifications by final outcome.", totals, ["outcome"]),
            counter("baton_webhook_attempts", "Webhook POST attempts.", {(): float(notifier.attempts_total)}, []),
        ]

    return scrape


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
        after_append=runtime.after_append,
        timer_interval=settings.timer_interval_seconds,
    )
    runtime.add_consumer(FollowupProjection(), reactor=ladder.react)
    runtime.add_consumer(DirectoryProjection())
    runtime.add_background(ladder.run_timer)
    runtime.add_background(notifier.run)
    runtime.add_scraper(ladder.scrape)
    runtime.add_scraper(notifier_metrics(notifier))
    app = create_followup_app(runtime)
    add_webhook_routes(app, notifier, settings.default_tenant)
    return app
