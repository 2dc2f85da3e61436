"""The envelope every stored and published event travels in."""

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.ids import EntityId, TenantId


class TraceContext(BaseModel):
    """W3C trace context of the request that caused an event (empty when none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    traceparent: str | None = None
    tracestate: str | None = None


class EventEnvelope(BaseModel):
    """One recorded event with everything an auditor or a consumer needs.

    ``stream`` names the event-store stream the event belongs to: ``customer:<id>``
    for a customer's history, ``agent:<id>`` for the agent directory. ``stream_version``
    is the event's 1-based position in that stream. ``payload`` is the event body as
    described by the JSON Schema of ``event_type`` at ``schema_version``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    tenant_id: TenantId
    stream: str = Field(min_length=1, max_length=200)
    customer_id: EntityId | None = Field(
        default=None, description="The customer whose stream this is; null for directory events."
    )
    stream_version: int = Field(ge=1)
    event_type: str = Field(min_length=1, max_length=100)
    schema_version: int = Field(ge=1)
    occurred_at: datetime
    recorded_at: datetime
    actor: str = Field(min_length=1, max_length=200, description="Who caused it: 'agent:<id>', 'system:<service>'.")
    correlation_id: UUID
    causation_id: UUID | None = None
    trace_context: TraceContext = TraceContext()
    payload: dict[str, Any]
