"""routing's pure projections: who owns each customer."""

from __future__ import annotations

from typing import Any

from contracts.envelope import EventEnvelope
from contracts.events import ContactOpened, Event, LoopClosed, OwnerAssigned


class OwnershipProjection:
    """One document per customer: the current owner, since when, and why."""

    view = "ownership"

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        """Fold one event of a customer stream (other streams leave the doc as it is)."""
        if envelope.customer_id is None:
            return doc
        doc = {**doc, "customer_id": envelope.customer_id, "version": envelope.stream_version}
        if isinstance(event, OwnerAssigned):
            doc["owner_id"] = event.agent_id
            doc["owner_since"] = envelope.occurred_at.isoformat()
            doc["cause"] = event.cause.value
            doc["cause_event_id"] = str(envelope.event_id)
            doc["previous_owner_id"] = event.previous_agent_id
        elif isinstance(event, ContactOpened):
            doc["open_contacts"] = sorted({*doc.get("open_contacts", []), event.contact_id})
        elif isinstance(event, LoopClosed):
            doc["open_contacts"] = [
                c for c in doc.get("open_contacts", []) if c != event.contact_id
            ]
        return doc
