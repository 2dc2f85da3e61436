"""intake's HTTP API: commands and queries for CRMs and agents."""


from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import Body, Depends, FastAPI, Header, Path, Response

from contracts.commands import OpenContact
from contracts.envelope import TraceContext
from contracts.errors import RuleViolation
from runtime.commanding import execute, load
from runtime.compose import ServiceRuntime
from runtime.events import EventContext, customer_stream
from runtime.store.port import RecordedEvent
from runtime.web import create_app, tenant_dependency
from services.intake.domain import CustomerState, decide_open_contact, evolve

CustomerId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        description="Your id for the customer.",
    ),
]

DESCRIPTION = """\
Baton gives every customer exactly one accountable owner. This API records what
agents do (commands) and answers who owns a customer (queries).

Errors are RFC 9457 problem details (`application/problem+json`): `rule` names the rule
that was broken, `errors` lists each invalid field with the reason. Send `X-Tenant-ID`
to act for a tenant (default: the configured tenant).
"""


def customer_view(state: CustomerState, tenant_id: str) -> dict[str, Any]:
    """The public JSON shape of a customer."""
    owner = state.owner
    return {
        "tenant_id": tenant_id,
        "customer_id": state.customer_id,
        "version": state.version,
        "owner": None
        if owner is None
        else {
            "agent_id": owner.agent_id,
            "since": owner.since.isoformat(),
            "cause": owner.cause,
            "cause_event_id": owner.cause_event_id,
        },
        "open_contacts": [
            {
                "contact_id": c.contact_id,
                "agent_id": c.agent_id,
                "channel": c.channel,
                "subject": c.subject,
                "opened_at": c.opened_at.isoformat(),
            }
            for c in state.open_contacts
        ],
    }


def create_intake_app(
    runtime: ServiceRuntime, after_append: Callable[[Sequence[RecordedEvent]], Awaitable[None]]
) -> FastAPI:
    """The intake app over a composed runtime; ``after_append`` publishes new events."""
    settings = runtime.settings
    app = create_app("Baton intake", DESCRIPTION, runtime)
    Tenant = Annotated[str, Depends(tenant_dependency(settings.default_tenant))]

    def context(
        actor: str, correlation: str | None, traceparent: str | None, tracestate: str | None
    ) -> EventContext:
        try:
            correlation_id = UUID(correlation) if correlation else uuid4()
        except ValueError as exc:
            raise RuleViolation(
                "invalid",
                "validation",
                "X-Correlation-ID must be a UUID",
                errors=[
                    {"field": "X-Correlation-ID", "location": "header", "reason": "not a UUID"}
                ],
            ) from exc
        return EventContext(
            actor=actor,
            occurred_at=runtime.clock(),
            correlation_id=correlation_id,
            trace_context=TraceContext(traceparent=traceparent, tracestate=tracestate),
        )

    @app.post(
        "/v1/customers/{customer_id}/contacts",
        tags=["contacts"],
        summary="Open a contact (the first contact's agent becomes owner)",
        status_code=201,
        responses={
            200: {
                "description": "The contact already existed for this agent: nothing new recorded."
            },
            409: {"description": "The contact id exists for another agent."},
            422: {"description": "Invalid request (problem details name the field)."},
        },
    )
    async def open_contact(
        customer_id: CustomerId,
        command: Annotated[OpenContact, Body()],
        tenant: Tenant,
        response: Response,
        x_correlation_id: Annotated[str | None, Header()] = None,
        traceparent: Annotated[str | None, Header()] = None,
        tracestate: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        contact_id = command.contact_id or f"ct-{uuid4().hex[:12]}"
        outcome = await execute(
            runtime.store,
            tenant,
            customer_stream(customer_id),
            initial=CustomerState(customer_id),
            fold=evolve,
            decide=lambda state: decide_open_contact(state, command, contact_id, uuid4),
            context=context(f"agent:{command.agent_id}", x_correlation_id, traceparent, tracestate),
            retries=settings.command_retries,
            after_append=after_append,
        )
        if not outcome.recorded:
            response.status_code = 200
        body = customer_view(outcome.state, tenant)
        body["contact_id"] = contact_id
        body["recorded_event_ids"] = [str(r.event_id) for r in outcome.recorded]
        return body

    @app.get(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        summary="A customer's current owner, version and open contacts",
        responses={404: {"description": "Nothing was ever recorded for this customer."}},
    )
    async def get_customer(customer_id: CustomerId, tenant: Tenant) -> dict[str, Any]:
        state, _ = await load(
            runtime.store, tenant, customer_stream(customer_id), CustomerState(customer_id), evolve
        )
        if not state.exists:
            raise RuleViolation(
                "not_found", "customer_not_found", f"no customer {customer_id} in tenant {tenant}"
            )
        return customer_view(state, tenant)

    return app
