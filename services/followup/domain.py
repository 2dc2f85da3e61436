"""followup's pure projections: what is still open for each customer."""

from __future__ import annotations

from typing import Any

from contracts.envelope import EventEnvelope
from contracts.events import ContactOpened, Event, LoopClosed, OwnerAssigned


class FollowupProjection:
    """One document per customer: open contacts and who must keep promises (the owner)."""

    view = "followup"

    def wants(self, envelope: EventEnvelope) -> bool:
        """Customer streams only."""
        return envelope.customer_id is not None

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        """Fold one event of a customer stream."""
        doc = {**doc, "customer_id": envelope.customer_id, "version": envelope.stream_version}
        contacts: dict[str, Any] = dict(doc.get("open_contacts", {}))
        if isinstance(event, ContactOpened):
            contacts[event.contact_id] = {
                "agent_id": event.agent_id,
                "opened_at": envelope.occurred_at.isoformat(),
            }
        elif isinstance(event, LoopClosed):
            contacts.pop(event.contact_id, None)
        elif isinstance(event, OwnerAssigned):
            doc["owner_id"] = event.agent_id
        doc["open_contacts"] = contacts
        return doc
