"""Pure projections more than one service keeps: ownership per customer, the directory."""

from __future__ import annotations

from typing import Any

from contracts.envelope import EventEnvelope
from contracts.events import ContactOpened, Event, LoopClosed, OwnerAssigned
from runtime.domain.directory import DIRECTORY_STREAM, Agent, Directory, evolve_agent


class OwnershipProjection:
    """One document per customer: the current owner, since when, why, and open contacts."""

    view = "ownership"

    def wants(self, envelope: EventEnvelope) -> bool:
        """Customer streams only."""
        return envelope.customer_id is not None

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        """Fold one event of a customer stream."""
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
            doc["open_contacts"] = [c for c in doc.get("open_contacts", []) if c != event.contact_id]
        return doc


class DirectoryProjection:
    """One document per tenant: every agent's directory entry."""

    view = "directory"

    def wants(self, envelope: EventEnvelope) -> bool:
        """The directory stream only."""
        return envelope.stream == DIRECTORY_STREAM

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        """Fold one directory event."""
        agent_id = getattr(event, "agent_id", None)
        if agent_id is None:
            return doc
        agents: dict[str, Any] = dict(doc.get("agents", {}))
        current = directory_from_doc({"agents": agents}).get(agent_id) or Agent(agent_id)
        agents[agent_id] = evolve_agent(current, envelope, event).as_dict()
        return {**doc, "agents": agents}


def directory_from_doc(doc: dict[str, Any] | None) -> Directory:
    """The directory held in a ``DirectoryProjection`` document."""
    agents: dict[str, Agent] = {}
    for agent_id, entry in ((doc or {}).get("agents") or {}).items():
        agents[agent_id] = Agent(
            agent_id=agent_id,
            version=int(entry.get("version", 0)),
            name=str(entry.get("name", "")),
            role=str(entry.get("role", "agent")),
            teams=tuple(entry.get("teams", ())),
            skills=tuple(entry.get("skills", ())),
            supervisor_id=entry.get("supervisor_id"),
            available=bool(entry.get("available", False)),
        )
    return Directory(agents=agents)
