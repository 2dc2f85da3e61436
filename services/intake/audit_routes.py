"""intake's audit API: a customer's events, ownership periods, state at a moment, the
hash chain's status, and the auditor's timeline page.

Mounted by ``add_audit_routes(app, runtime)``. Everything is computed from the event
store (the source of truth), never from a view: ``runtime.audit`` does the folding and
verification, this module only reads and serialises.
"""

# No `from __future__ import annotations` here: FastAPI must resolve the `Tenant` alias
# defined inside add_audit_routes at runtime.
import base64
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse

from contracts.errors import RuleViolation
from runtime.audit.history import owner_as_of, replay, state_as_of
from runtime.audit.timeline_page import CONTENT_SECURITY_POLICY, render_timeline_page
from runtime.audit.verify import verify_stream
from runtime.commanding import load_directory
from runtime.compose import ServiceRuntime
from runtime.domain.customer import CustomerState
from runtime.events import customer_stream, to_envelope
from runtime.store.port import EventStore, RecordedEvent
from runtime.web import tenant_dependency

ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
CustomerId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="Your id for the customer.")
]
MAX_PAGE = 1000
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Nothing was ever recorded for this customer (problem details)."}
}


def _not_found(customer_id: str, tenant: str) -> RuleViolation:
    return RuleViolation("not_found", "customer_not_found", f"no customer {customer_id} in tenant {tenant}")


def parse_as_of(value: str) -> datetime:
    """An ``as_of`` query value: ISO 8601; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RuleViolation(
            "invalid",
            "validation",
            f"as_of: not an ISO 8601 date-time: {value!r}",
            errors=[{"field": "as_of", "location": "query", "reason": "not an ISO 8601 date-time"}],
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def read_customer(store: EventStore, tenant: str, customer_id: str) -> list[RecordedEvent]:
    """The customer's whole stream; ``customer_not_found`` when it is empty."""
    records = await store.read_stream(tenant, customer_stream(customer_id))
    if not records:
        raise _not_found(customer_id, tenant)
    return records


async def load_state_as_of(store: EventStore, tenant: str, customer_id: str, as_of: datetime) -> CustomerState:
    """The customer's state at ``as_of`` (for ``GET /v1/customers/{id}?as_of=``).

    Raises ``customer_not_found`` if nothing was ever recorded, like the current state.
    """
    records = await read_customer(store, tenant, customer_id)
    return state_as_of([to_envelope(r) for r in records], as_of, customer_id)


async def agent_names(store: EventStore, tenant: str) -> dict[str, str]:
    """Agent id -> name, from the tenant's directory stream."""
    directory = await load_directory(store, tenant)
    return {agent_id: agent.name for agent_id, agent in directory.agents.items() if agent.name}


def _event_json(record: RecordedEvent, stored: bool) -> dict[str, Any]:
    envelope = to_envelope(record).model_dump(mode="json")
    body = {**envelope, "hash": record.hash, "previous_hash": record.previous_hash}
    if stored:
        body["data_b64"] = base64.b64encode(record.data).decode("ascii")
        body["metadata_b64"] = base64.b64encode(record.metadata).decode("ascii")
    return body


def add_audit_routes(app: FastAPI, runtime: ServiceRuntime) -> None:
    """Mount the audit routes on intake's app."""
    store = runtime.store
    Tenant = Annotated[str, Depends(tenant_dependency(runtime.settings.default_tenant))]

    @app.get(
        "/v1/customers/{customer_id}/events",
        tags=["audit"],
        summary="The customer's events in stream order, with their hash-chain links (paged)",
        responses=NOT_FOUND,
    )
    async def customer_events(
        request: Request,
        customer_id: CustomerId,
        tenant: Tenant,
        after_version: Annotated[int, Query(ge=0, description="Return events after this stream version.")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many events.")] = 100,
        stored: Annotated[
            bool,
            Query(
                description="Also return the stored bytes (data_b64, metadata_b64) the hash chain covers, "
                "so a client can recompute the chain itself (see docs/audit.md)."
            ),
        ] = False,
    ) -> dict[str, Any]:
        stream = customer_stream(customer_id)
        records = await store.read_stream(tenant, stream, after_version=after_version, limit=limit + 1)
        if not records and (after_version == 0 or await store.stream_version(tenant, stream) == 0):
            raise _not_found(customer_id, tenant)
        page, more = records[:limit], len(records) > limit
        next_link = None
        if more:
            next_link = str(request.url.include_query_params(after_version=page[-1].version))
        return {
            "tenant_id": tenant,
            "customer_id": customer_id,
            "after_version": after_version,
            "limit": limit,
            "items": [_event_json(r, stored) for r in page],
            "next": next_link,
        }

    @app.get(
        "/v1/customers/{customer_id}/ownership",
        tags=["audit"],
        summary="Who owned the customer from when to when, and the event that made them owner",
        responses=NOT_FOUND,
    )
    async def customer_ownership(customer_id: CustomerId, tenant: Tenant) -> dict[str, Any]:
        records = await read_customer(store, tenant, customer_id)
        history = replay([to_envelope(r) for r in records], customer_id)
        return {
            "tenant_id": tenant,
            "customer_id": customer_id,
            "version": history.state.version,
            "periods": [p.as_dict() for p in history.periods],
        }

    @app.get(
        "/v1/customers/{customer_id}/state",
        tags=["audit"],
        summary="The customer's owner (and open promises and contacts) at a moment",
        responses={**NOT_FOUND, 422: {"description": "as_of is not an ISO 8601 date-time."}},
    )
    async def customer_state_as_of(
        customer_id: CustomerId,
        tenant: Tenant,
        as_of: Annotated[str, Query(description="ISO 8601 date-time, e.g. 2026-11-20T10:00:00Z.")],
    ) -> dict[str, Any]:
        moment = parse_as_of(as_of)
        records = await read_customer(store, tenant, customer_id)
        at = owner_as_of([to_envelope(r) for r in records], moment, customer_id)
        return {"tenant_id": tenant, "customer_id": customer_id, **at.as_dict()}

    @app.get(
        "/v1/customers/{customer_id}/verify",
        tags=["audit"],
        summary="Recompute the customer's hash chain: ok, or the first broken event and how",
        responses=NOT_FOUND,
    )
    async def customer_verify(
        customer_id: CustomerId,
        tenant: Tenant,
        expected_head: Annotated[
            str | None, Query(description="A head hash kept from an earlier export: it must be in the chain.")
        ] = None,
    ) -> dict[str, Any]:
        records = await read_customer(store, tenant, customer_id)
        report = verify_stream(records, tenant, customer_stream(customer_id), expected_head)
        return {"customer_id": customer_id, **report.as_dict()}

    @app.get(
        "/v1/customers/{customer_id}/timeline",
        tags=["audit"],
        summary="The auditor's timeline page (self-contained HTML: renders offline)",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}}, **NOT_FOUND},
    )
    async def customer_timeline(customer_id: CustomerId, tenant: Tenant) -> HTMLResponse:
        records = await read_customer(store, tenant, customer_id)
        history = replay([to_envelope(r) for r in records], customer_id)
        report = verify_stream(records, tenant, customer_stream(customer_id))
        page = render_timeline_page(history, report, tenant, await agent_names(store, tenant), runtime.clock())
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
