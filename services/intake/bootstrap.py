"""intake's composition root: settings in, a ready-to-serve app out."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from fastapi import FastAPI

from runtime.compose import ServiceRuntime, build_runtime
from runtime.config import Settings
from runtime.domain.projections import OwnershipProjection
from runtime.policy import load_policies
from runtime.store.port import RecordedEvent
from services.intake.app import create_intake_app
from services.intake.escalations import EscalationIndex

log = logging.getLogger(__name__)

FAULT_EXIT_CODE = 70


def bootstrap(settings: Settings, runtime: ServiceRuntime | None = None) -> FastAPI:
    """Compose intake. Tests may pass a runtime built from fakes."""
    runtime = runtime or build_runtime("intake", settings)
    escalations = EscalationIndex(runtime.views)
    runtime.add_consumer(OwnershipProjection(), reactor=escalations.react)

    async def after_append(records: Sequence[RecordedEvent]) -> None:
        if settings.fault == "exit_after_append":
            log.critical("fault switch: exiting between append and publish")
            logging.shutdown()
            os._exit(FAULT_EXIT_CODE)
        await runtime.after_append(records)

    return create_intake_app(runtime, after_append, load_policies(settings), escalations)
