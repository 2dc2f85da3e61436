"""Subject and header names used on the bus."""

from __future__ import annotations

MSG_ID_HEADER = "Nats-Msg-Id"
TENANT_HEADER = "Baton-Tenant"
STREAM_HEADER = "Baton-Stream"
VERSION_HEADER = "Baton-Stream-Version"
TYPE_HEADER = "Baton-Event-Type"


def event_subject(prefix: str, tenant_id: str, event_type: str) -> str:
    """``<prefix>.<tenant>.<event type>``: consumers can filter by tenant and by type."""
    return f"{prefix}.{tenant_id}.{event_type}"


def all_events(prefix: str) -> str:
    """The wildcard subject covering every event."""
    return f"{prefix}.>"
