"""Encoding between the contracts (typed events, envelopes) and stored records.

The payload and the rest of the envelope are encoded to JSON bytes once, at append
time; the store keeps those bytes verbatim, and every reader decodes the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from contracts.envelope import EventEnvelope, TraceContext
from contracts.events import Event
from runtime.store.port import NewEvent, RecordedEvent
from runtime.upcasting import typed_payload

CUSTOMER_STREAM_PREFIX = "customer:"
AGENT_STREAM_PREFIX = "agent:"


def customer_stream(customer_id: str) -> str:
    """The stream name holding one customer's history."""
    return f"{CUSTOMER_STREAM_PREFIX}{customer_id}"


def agent_stream(agent_id: str) -> str:
    """The stream name holding one agent's directory entry."""
    return f"{AGENT_STREAM_PREFIX}{agent_id}"


def customer_of(stream: str) -> str | None:
    """The customer id of a customer stream, None for other streams."""
    if stream.startswith(CUSTOMER_STREAM_PREFIX):
        return stream[len(CUSTOMER_STREAM_PREFIX) :]
    return None


@dataclass(frozen=True, slots=True)
class EventContext:
    """Who and what caused the events of one command: copied into every envelope."""

    actor: str
    occurred_at: datetime
    correlation_id: UUID
    causation_id: UUID | None = None
    trace_context: TraceContext = field(default_factory=TraceContext)


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def encode_event(event: Event, stream: str, context: EventContext, event_id: UUID | None = None) -> NewEvent:
    """Encode a typed event for appending to ``stream``."""
    metadata = {
        "occurred_at": context.occurred_at.isoformat(),
        "actor": context.actor,
        "correlation_id": str(context.correlation_id),
        "causation_id": str(context.causation_id) if context.causation_id else None,
        "trace_context": context.trace_context.model_dump(exclude_none=True),
        "customer_id": customer_of(stream),
    }
    return NewEvent(
        event_id=event_id or uuid4(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        data=_canonical_json(event.model_dump(mode="json")),
        metadata=_canonical_json(metadata),
    )


def to_envelope(record: RecordedEvent) -> EventEnvelope:
    """The envelope of a stored event (payload left as a JSON object)."""
    meta = json.loads(record.metadata)
    return EventEnvelope(
        event_id=record.event_id,
        tenant_id=record.tenant_id,
        stream=record.stream,
        customer_id=meta.get("customer_id"),
        stream_version=record.version,
        event_type=record.event_type,
        schema_version=record.schema_version,
        occurred_at=datetime.fromisoformat(meta["occurred_at"]),
        recorded_at=record.recorded_at,
        actor=meta["actor"],
        correlation_id=UUID(meta["correlation_id"]),
        causation_id=UUID(meta["causation_id"]) if meta.get("causation_id") else None,
        trace_context=TraceContext(**meta.get("trace_context", {})),
        payload=json.loads(record.data),
    )


def payload_of(envelope: EventEnvelope) -> Event:
    """The typed payload of an envelope (raises UnknownEventType or a validation error)."""
    return typed_payload(envelope.event_type, envelope.schema_version, envelope.payload)
