"""intake's index of escalations: which customer each belongs to and whether it is open.

Kept by a reactor on intake's consumer (idempotent CAS updates), so the API can answer
GET /v1/escalations?status=open and find the customer of an escalation to acknowledge.
The index follows the bus, so an escalation appears in it a moment after it is raised.
"""

from __future__ import annotations

import contextlib
from typing import Any

from contracts.envelope import EventEnvelope
from contracts.events import CallbackCompleted, EscalationAcknowledged, EscalationRaised, Event
from runtime.domain.decisions import escalation_id_for_promise
from runtime.store.port import ViewConflict, ViewStore

VIEW = "escalations"
OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)
MAX_LEVELS = 5


class EscalationIndex:
    """Escalations by id, across customers of a tenant."""

    def __init__(self, views: ViewStore) -> None:
        self._views = views

    async def react(self, envelope: EventEnvelope, event: Event) -> None:
        """Record raised, acknowledged and resolved escalations."""
        tenant = envelope.tenant_id
        if isinstance(event, EscalationRaised) and envelope.customer_id is not None:
            doc = {
                "escalation_id": event.escalation_id,
                "customer_id": envelope.customer_id,
                "level": event.level,
                "to_agent_id": event.to_agent_id,
                "reason": event.reason,
                "promise_id": event.promise_id,
                "handoff_id": event.handoff_id,
                "raised_at": envelope.occurred_at.isoformat(),
                "status": OPEN,
            }
            with contextlib.suppress(ViewConflict):  # already indexed: a re-run
                await self._views.save(VIEW, tenant, event.escalation_id, doc, 1, 0)
        elif isinstance(event, EscalationAcknowledged):
            await self._set(
                tenant,
                event.escalation_id,
                ACKNOWLEDGED,
                acknowledged_by=event.agent_id,
                acknowledged_at=envelope.occurred_at.isoformat(),
            )
        elif isinstance(event, CallbackCompleted):
            for level in range(1, MAX_LEVELS + 1):
                await self._set(
                    tenant,
                    escalation_id_for_promise(event.promise_id, level),
                    RESOLVED,
                    resolved_at=envelope.occurred_at.isoformat(),
                    only_if_open=True,
                )

    async def _set(
        self, tenant: str, escalation_id: str, status: str, only_if_open: bool = False, **fields: Any
    ) -> None:
        for _ in range(20):
            found = await self._views.load(VIEW, tenant, escalation_id)
            if found is None or found.doc.get("status") == status:
                return
            if only_if_open and found.doc.get("status") != OPEN:
                return
            try:
                await self._views.save(
                    VIEW,
                    tenant,
                    escalation_id,
                    {**found.doc, **fields, "status": status},
                    found.version + 1,
                    found.version,
                )
                return
            except ViewConflict:
                continue

    async def get(self, tenant: str, escalation_id: str) -> dict[str, Any] | None:
        """One escalation, or None when unknown (or not indexed yet)."""
        found = await self._views.load(VIEW, tenant, escalation_id)
        return dict(found.doc) if found else None

    async def list(self, tenant: str, status: str | None) -> list[dict[str, Any]]:
        """Escalations of a tenant, oldest first, optionally by status."""
        docs = []
        for wanted in [status] if status else list(STATUSES):
            docs += [d.doc for d in await self._views.find(VIEW, tenant, "status", wanted)]
        return sorted(docs, key=lambda d: (str(d.get("raised_at")), str(d.get("escalation_id"))))
