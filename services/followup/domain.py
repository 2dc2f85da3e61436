"""followup's pure projection: what is still open for each customer."""

from __future__ import annotations

from typing import Any

from contracts.envelope import EventEnvelope
from contracts.events import (
    CallbackCancelled,
    CallbackCompleted,
    CallbackPromised,
    ContactOpened,
    EscalationAcknowledged,
    EscalationRaised,
    Event,
    LoopClosed,
    OwnerAssigned,
    PromiseBroken,
)

UNRESOLVED = ("open", "broken")


class FollowupProjection:
    """One document per customer: open contacts, the owner, promises and escalations."""

    view = "followup"

    def wants(self, envelope: EventEnvelope) -> bool:
        """Customer streams only."""
        return envelope.customer_id is not None

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        """Fold one event of a customer stream."""
        doc = {**doc, "customer_id": envelope.customer_id, "version": envelope.stream_version}
        contacts: dict[str, Any] = dict(doc.get("open_contacts", {}))
        promises: dict[str, Any] = {k: dict(v) for k, v in doc.get("promises", {}).items()}
        escalations: dict[str, Any] = {k: dict(v) for k, v in doc.get("escalations", {}).items()}
        at = envelope.occurred_at.isoformat()
        if isinstance(event, ContactOpened):
            contacts[event.contact_id] = {"agent_id": event.agent_id, "opened_at": at}
        elif isinstance(event, LoopClosed):
            contacts.pop(event.contact_id, None)
        elif isinstance(event, OwnerAssigned):
            doc["owner_id"] = event.agent_id
            for promise in promises.values():
                if promise["status"] in UNRESOLVED:
                    promise["responsible_id"] = event.agent_id
        elif isinstance(event, CallbackPromised):
            promises[event.promise_id] = {
                "contact_id": event.contact_id,
                "due_at": event.due_at.isoformat(),
                "responsible_id": doc.get("owner_id", event.promised_by),
                "status": "open",
            }
        elif isinstance(event, CallbackCompleted) and event.promise_id in promises:
            late = event.late or promises[event.promise_id]["status"] == "broken"
            promises[event.promise_id].update(status="kept_late" if late else "kept", resolved_at=at)
        elif isinstance(event, CallbackCancelled) and event.promise_id in promises:
            promises[event.promise_id].update(status="cancelled", resolved_at=at)
        elif isinstance(event, PromiseBroken) and event.promise_id in promises:
            promises[event.promise_id].update(status="broken", broken_at=at)
        elif isinstance(event, EscalationRaised):
            escalations[event.escalation_id] = {
                "level": event.level,
                "to_agent_id": event.to_agent_id,
                "promise_id": event.promise_id,
                "handoff_id": event.handoff_id,
                "raised_at": at,
                "acknowledged_by": None,
            }
        elif isinstance(event, EscalationAcknowledged) and event.escalation_id in escalations:
            escalations[event.escalation_id]["acknowledged_by"] = event.agent_id
        doc["open_contacts"] = contacts
        doc["promises"] = promises
        doc["escalations"] = escalations
        doc["open_promises"] = sum(1 for p in promises.values() if p["status"] in UNRESOLVED)
        return doc
