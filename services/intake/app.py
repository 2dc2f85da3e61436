"""intake's HTTP API: commands and queries for CRMs and agents."""

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contracts.commands import (
    AcceptHandoff,
    AcknowledgeEscalation,
    AddNote,
    CancelCallback,
    CloseLoop,
    CompleteCallback,
    DeclineHandoff,
    OpenContact,
    PromiseCallback,
    RegisterAgent,
    RequestHandoff,
)
from contracts.errors import RuleViolation
from runtime.commanding import execute, execute_for_customer, load_customer, load_directory
from runtime.compose import ServiceRuntime
from runtime.domain.customer import CustomerState, Handoff
from runtime.domain.decisions import (
    decide_accept_handoff,
    decide_acknowledge_escalation,
    decide_add_note,
    decide_cancel_callback,
    decide_close_loop,
    decide_complete_callback,
    decide_decline_handoff,
    decide_open_contact,
    decide_promise_callback,
    decide_request_handoff,
)
from runtime.domain.directory import DIRECTORY_STREAM, Directory, decide_register_agent, evolve_directory
from runtime.domain.projections import OwnershipProjection
from runtime.domain.time import due_after, parse_duration
from runtime.events import EventContext
from runtime.policy import Policies
from runtime.store.port import RecordedEvent
from runtime.telemetry import current_trace_context
from runtime.web import STATUS_BY_KIND, create_app, problem, tenant_dependency
from services.intake.audit_routes import add_audit_routes, load_state_as_of, parse_as_of
from services.intake.escalations import STATUSES, EscalationIndex
from services.intake.idempotency import IdempotencyRecords, IdSource, Remembered, fingerprint

ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
CustomerId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="Your id for the customer.")
]
AgentId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="The agent's id.")]
ContactId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="The contact's id.")]
PromiseId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="The promise's id.")]
EscalationId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="The escalation's id.")
]
HandoffId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="The hand-off's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry safely: the same key with the same request returns the first answer "
        "and records nothing new; the same key with another request is refused (422).",
    ),
]

DESCRIPTION = """\
Baton gives every customer exactly one accountable owner. This API records what agents
do (commands) and answers who owns a customer (queries).

* Every POST/PUT honours an `Idempotency-Key` header.
* Errors are RFC 9457 problem details (`application/problem+json`): `rule` names the
  rule that was broken, `errors` lists each invalid field with the reason.
* Send `X-Tenant-ID` to act for a tenant (default: the configured tenant).
* Concurrent commands on one customer are serialised by optimistic concurrency with a
  bounded internal retry; a request that still loses gets 409 `concurrent_modification`.
"""

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown customer, contact or hand-off (problem details)."},
    409: {"description": "The command breaks a rule; `rule` names it (problem details)."},
    422: {"description": "Invalid request; `errors` names each field (problem details)."},
}

AfterAppend = Callable[[Sequence[RecordedEvent]], Awaitable[None]]


def _handoff_json(handoff: Handoff, state: CustomerState) -> dict[str, Any]:
    return {
        "handoff_id": handoff.handoff_id,
        "status": handoff.status,
        "from_agent_id": handoff.from_agent_id,
        "target": handoff.target.model_dump(mode="json"),
        "reason": handoff.reason,
        "recap": handoff.recap,
        "customer_informed": handoff.customer_informed,
        "requested_at": handoff.requested_at.isoformat(),
        "offers": [
            {
                "agent_id": o.agent_id,
                "attempt": o.attempt,
                "offered_at": o.offered_at.isoformat(),
                "expires_at": o.expires_at.isoformat(),
                "outcome": o.outcome,
                "reason": o.reason,
            }
            for o in handoff.offers
        ],
        "accepted_by": handoff.accepted_by,
        "failure": handoff.failure,
        "notes": [
            {
                "note_id": n.note_id,
                "contact_id": n.contact_id,
                "author_id": n.author_id,
                "text": n.text,
                "at": n.at.isoformat(),
            }
            for n in state.notes
        ],
    }


def customer_json(state: CustomerState, tenant_id: str) -> dict[str, Any]:
    """The public JSON shape of a customer."""
    owner = state.owner
    pending = state.pending_handoff
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
            "handoff_id": owner.handoff_id,
            "recap": state.handoffs[owner.handoff_id].recap if owner.handoff_id in state.handoffs else None,
        },
        "open_contacts": [
            {
                "contact_id": c.contact_id,
                "agent_id": c.agent_id,
                "channel": c.channel,
                "subject": c.subject,
                "opened_at": c.opened_at.isoformat(),
                "notes": [
                    {"note_id": n.note_id, "author_id": n.author_id, "text": n.text, "at": n.at.isoformat()}
                    for n in state.notes_of(c.contact_id)
                ],
            }
            for c in state.open_contacts
        ],
        "pending_handoff": None if pending is None else _handoff_json(pending, state),
        "open_promises": [
            {
                "promise_id": p.promise_id,
                "contact_id": p.contact_id,
                "promised_by": p.promised_by,
                "responsible_id": p.responsible_id,
                "due_at": p.due_at.isoformat(),
                "channel": p.channel,
                "what": p.what,
                "status": p.status,
            }
            for p in state.open_promises
        ],
    }


def _field_error(field: str, reason: str) -> RuleViolation:
    return RuleViolation(
        "invalid",
        "validation",
        f"invalid request: {field}: {reason}",
        errors=[{"field": field, "location": "body", "reason": reason}],
    )


def create_intake_app(  # noqa: PLR0915
    runtime: ServiceRuntime, after_append: AfterAppend, policies: Policies, escalations: EscalationIndex
) -> FastAPI:
    """The intake app over a composed runtime; ``after_append`` publishes new events."""
    settings = runtime.settings
    store = runtime.store
    records = IdempotencyRecords(runtime.views)
    app = create_app("Baton intake", DESCRIPTION, runtime)
    Tenant = Annotated[str, Depends(tenant_dependency(settings.default_tenant))]

    def context(request: Request, actor: str) -> EventContext:
        correlation = request.headers.get("x-correlation-id")
        try:
            correlation_id = UUID(correlation) if correlation else uuid4()
        except ValueError as exc:
            raise RuleViolation(
                "invalid",
                "validation",
                "X-Correlation-ID must be a UUID",
                errors=[{"field": "X-Correlation-ID", "location": "header", "reason": "not a UUID"}],
            ) from exc
        return EventContext(
            actor=actor,
            occurred_at=runtime.clock(),
            correlation_id=correlation_id,
            trace_context=current_trace_context(),
        )

    async def idempotent(
        request: Request,
        tenant: str,
        key: str | None,
        command: BaseModel | None,
        run: Callable[[IdSource], Awaitable[Remembered]],
    ) -> JSONResponse:
        """Run a command once per Idempotency-Key; replay the first answer to retries."""
        name = getattr(request.scope.get("route"), "name", "unknown")
        counted = runtime.metrics.commands
        try:
            response = await _idempotent(request, tenant, key, command, run)
        except RuleViolation as exc:
            counted.labels(runtime.name, name, exc.kind).inc()
            raise
        except Exception:
            counted.labels(runtime.name, name, "error").inc()
            raise
        replayed = response.headers.get("idempotent-replayed") == "true"
        outcome = "replayed" if replayed else ("ok" if response.status_code < 400 else "rejected")
        counted.labels(runtime.name, name, outcome).inc()
        return response

    async def _idempotent(
        request: Request,
        tenant: str,
        key: str | None,
        command: BaseModel | None,
        run: Callable[[IdSource], Awaitable[Remembered]],
    ) -> JSONResponse:
        if key is None:
            answer = await run(IdSource(tenant, None))
            return JSONResponse(answer.body, status_code=answer.status)
        IdempotencyRecords.validate_key(key)
        print_ = fingerprint(request.method, request.url.path, command.model_dump(mode="json") if command else None)
        earlier = await records.lookup(tenant, key, print_)
        replayed = earlier is not None
        if earlier is None:
            try:
                answer = await run(IdSource(tenant, key))
            except RuleViolation as exc:
                if exc.rule == "concurrent_modification":
                    raise  # transient: a retry with the same key may succeed
                body = problem(STATUS_BY_KIND[exc.kind], exc.rule, exc.detail, request.url.path, **exc.extra)
                answer = Remembered(body.status_code, json.loads(bytes(body.body)))
            earlier = await records.remember(tenant, key, print_, answer)
        media = "application/problem+json" if earlier.status >= 400 else "application/json"
        return JSONResponse(
            earlier.body,
            status_code=earlier.status,
            media_type=media,
            headers={"Idempotent-Replayed": "true" if replayed else "false"},
        )

    async def customer_command(
        tenant: str,
        customer_id: str,
        ctx: EventContext,
        decide: Callable[[CustomerState], Any],
    ) -> tuple[CustomerState, tuple[RecordedEvent, ...]]:
        outcome = await execute_for_customer(
            store,
            tenant,
            customer_id,
            decide,
            context=ctx,
            retries=settings.command_retries,
            after_append=after_append,
        )
        return outcome.state, outcome.recorded

    async def directory(tenant: str) -> Directory:
        return await load_directory(store, tenant)

    def answer(
        state: CustomerState, tenant: str, recorded: Sequence[RecordedEvent], created: bool = True, **extra: Any
    ) -> Remembered:
        body = {**customer_json(state, tenant), **extra, "recorded_event_ids": [str(r.event_id) for r in recorded]}
        return Remembered(201 if created and recorded else 200, body)

    async def change_customer(
        request: Request,
        tenant: str,
        customer_id: str,
        key: str | None,
        command: BaseModel,
        actor: str,
        decide: Callable[[CustomerState, Callable[[], UUID]], Any],
        describe: Callable[[CustomerState], dict[str, Any]],
        on_recorded: Callable[[CustomerState], None] | None = None,
    ) -> JSONResponse:
        """A command on an existing customer that answers 200 with the customer and ``describe``."""

        async def run(ids: IdSource) -> Remembered:
            state, recorded = await customer_command(
                tenant, customer_id, context(request, actor), lambda s: decide(s, ids.uuids())
            )
            if recorded and on_recorded is not None:
                on_recorded(state)
            return answer(state, tenant, recorded, created=False, **describe(state))

        return await idempotent(request, tenant, key, command, run)

    # --- agents ------------------------------------------------------------------------

    @app.put(
        "/v1/agents/{agent_id}",
        tags=["agents"],
        summary="Register or update an agent",
        responses={
            201: {"description": "Registered."},
            200: {"description": "Updated or unchanged."},
            422: COMMON_ERRORS[422],
        },
    )
    async def put_agent(
        request: Request,
        agent_id: AgentId,
        command: Annotated[RegisterAgent, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        async def run(ids: IdSource) -> Remembered:
            if command.supervisor_id == agent_id:
                raise RuleViolation("invalid", "own_supervisor", "an agent cannot be their own supervisor")
            new_ids = ids.uuids
            outcome = await execute(
                store,
                tenant,
                DIRECTORY_STREAM,
                initial=Directory(),
                fold=evolve_directory,
                decide=lambda d: [(i(), e) for i in [new_ids()] for e in decide_register_agent(d, agent_id, command)],
                context=context(request, f"api:{tenant}"),
                retries=settings.command_retries,
                after_append=after_append,
            )
            agent = outcome.state.get(agent_id)
            assert agent is not None
            created = any(r.event_type == "AgentRegistered" for r in outcome.recorded)
            return Remembered(201 if created else 200, {**agent.as_dict(), "tenant_id": tenant})

        return await idempotent(request, tenant, idempotency_key, command, run)

    @app.get(
        "/v1/agents/{agent_id}",
        tags=["agents"],
        summary="An agent's directory entry",
        responses={404: {"description": "No such agent."}},
    )
    async def get_agent(agent_id: AgentId, tenant: Tenant) -> dict[str, Any]:
        agent = (await directory(tenant)).get(agent_id)
        if agent is None:
            raise RuleViolation("not_found", "agent_not_found", f"no agent {agent_id} in tenant {tenant}")
        return {**agent.as_dict(), "tenant_id": tenant}

    @app.get("/v1/agents/{agent_id}/customers", tags=["agents"], summary="The customers an agent owns")
    async def agent_customers(agent_id: AgentId, tenant: Tenant) -> dict[str, Any]:
        docs = await runtime.views.find(OwnershipProjection.view, tenant, "owner_id", agent_id)
        items = sorted(
            (
                {
                    "customer_id": d.doc["customer_id"],
                    "owner_since": d.doc.get("owner_since"),
                    "cause": d.doc.get("cause"),
                    "open_contacts": d.doc.get("open_contacts", []),
                }
                for d in docs
            ),
            key=lambda item: str(item["customer_id"]),
        )
        return {"tenant_id": tenant, "agent_id": agent_id, "customers": items}

    # --- customers -----------------------------------------------------------------------

    @app.post(
        "/v1/customers/{customer_id}/contacts",
        tags=["contacts"],
        status_code=201,
        summary="Open a contact (the first contact's agent becomes owner)",
        responses={200: {"description": "The contact already existed for this agent: nothing new."}, **COMMON_ERRORS},
    )
    async def open_contact(
        request: Request,
        customer_id: CustomerId,
        command: Annotated[OpenContact, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        async def run(ids: IdSource) -> Remembered:
            contact_id = command.contact_id or ids.entity("ct")
            state, recorded = await customer_command(
                tenant,
                customer_id,
                context(request, f"agent:{command.agent_id}"),
                lambda s: decide_open_contact(s, command, contact_id, ids.uuids()),
            )
            return answer(state, tenant, recorded, contact_id=contact_id)

        return await idempotent(request, tenant, idempotency_key, command, run)

    @app.post(
        "/v1/customers/{customer_id}/contacts/{contact_id}/notes",
        tags=["contacts"],
        status_code=201,
        summary="Take a note on a contact (notes feed the hand-off recap)",
        responses=COMMON_ERRORS,
    )
    async def add_note(
        request: Request,
        customer_id: CustomerId,
        contact_id: ContactId,
        command: Annotated[AddNote, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        async def run(ids: IdSource) -> Remembered:
            note_id = ids.entity("note")
            state, recorded = await customer_command(
                tenant,
                customer_id,
                context(request, f"agent:{command.author_id}"),
                lambda s: decide_add_note(s, contact_id, command, note_id, ids.uuids()),
            )
            return answer(state, tenant, recorded, note_id=note_id)

        return await idempotent(request, tenant, idempotency_key, command, run)

    @app.post(
        "/v1/customers/{customer_id}/contacts/{contact_id}/close",
        tags=["contacts"],
        summary="Close the loop (owner only; nothing may be left open)",
        responses={403: {"description": "Only the owner closes the loop."}, **COMMON_ERRORS},
    )
    async def close_loop(
        request: Request,
        customer_id: CustomerId,
        contact_id: ContactId,
        command: Annotated[CloseLoop, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return await change_customer(
            request,
            tenant,
            customer_id,
            idempotency_key,
            command,
            f"agent:{command.agent_id}",
            lambda s, new_id: decide_close_loop(s, contact_id, command, new_id),
            lambda s: {"contact_id": contact_id},
        )

    @app.post(
        "/v1/customers/{customer_id}/handoffs",
        tags=["handoffs"],
        status_code=201,
        summary="Request a warm hand-off (owner or their supervisor)",
        responses={403: {"description": "Only the owner or their supervisor may hand off."}, **COMMON_ERRORS},
    )
    async def request_handoff(
        request: Request,
        customer_id: CustomerId,
        command: Annotated[RequestHandoff, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        async def run(ids: IdSource) -> Remembered:
            handoff_id = ids.entity("ho")
            agents = await directory(tenant)
            target_id = getattr(command.target, "agent_id", None)

            def decide(s: CustomerState) -> Any:
                owner_entry = agents.get(s.owner.agent_id) if s.owner else None
                return decide_request_handoff(
                    s,
                    command,
                    handoff_id,
                    ids.uuids(),
                    owner_entry,
                    agents.get(command.from_agent_id),
                    agents.get(target_id),
                )

            state, recorded = await customer_command(
                tenant, customer_id, context(request, f"agent:{command.from_agent_id}"), decide
            )
            return answer(
                state, tenant, recorded, handoff_id=handoff_id, handoff=_handoff_json(state.handoffs[handoff_id], state)
            )

        return await idempotent(request, tenant, idempotency_key, command, run)

    @app.post(
        "/v1/customers/{customer_id}/handoffs/{handoff_id}/accept",
        tags=["handoffs"],
        summary="Accept a hand-off offered to you: you become the owner",
        responses={403: {"description": "The offer is for another agent."}, **COMMON_ERRORS},
    )
    async def accept_handoff(
        request: Request,
        customer_id: CustomerId,
        handoff_id: HandoffId,
        command: Annotated[AcceptHandoff, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        def observe_wait(state: CustomerState) -> None:
            waited = runtime.clock() - state.handoffs[handoff_id].requested_at
            runtime.metrics.handoff_acceptance.observe(waited.total_seconds())

        return await change_customer(
            request,
            tenant,
            customer_id,
            idempotency_key,
            command,
            f"agent:{command.agent_id}",
            lambda s, new_id: decide_accept_handoff(s, handoff_id, command, runtime.clock(), new_id),
            lambda s: {"handoff_id": handoff_id, "handoff": _handoff_json(s.handoffs[handoff_id], s)},
            on_recorded=observe_wait,
        )

    @app.post(
        "/v1/customers/{customer_id}/handoffs/{handoff_id}/decline",
        tags=["handoffs"],
        summary="Decline a hand-off offered to you; routing offers the next colleague",
        responses={403: {"description": "The offer is for another agent."}, **COMMON_ERRORS},
    )
    async def decline_handoff(
        request: Request,
        customer_id: CustomerId,
        handoff_id: HandoffId,
        command: Annotated[DeclineHandoff, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return await change_customer(
            request,
            tenant,
            customer_id,
            idempotency_key,
            command,
            f"agent:{command.agent_id}",
            lambda s, new_id: decide_decline_handoff(s, handoff_id, command, runtime.clock(), new_id),
            lambda s: {"handoff_id": handoff_id, "handoff": _handoff_json(s.handoffs[handoff_id], s)},
        )

    # --- promises and escalations ----------------------------------------------------------

    @app.post(
        "/v1/customers/{customer_id}/promises",
        tags=["promises"],
        status_code=201,
        summary="Promise a callback: due at a time (due_at) or within a duration (within, ISO 8601)",
        responses=COMMON_ERRORS,
    )
    async def promise_callback(
        request: Request,
        customer_id: CustomerId,
        command: Annotated[PromiseCallback, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        if (command.due_at is None) == (command.within is None):
            raise _field_error("due_at", "give exactly one of due_at and within")
        if command.due_at is not None and command.due_at.tzinfo is None:
            raise _field_error("due_at", "must include a time zone, e.g. 2026-11-20T10:00:00Z")
        within = None
        if command.within is not None:
            try:
                within = parse_duration(command.within)
            except ValueError as exc:
                raise _field_error("within", str(exc)) from exc

        async def run(ids: IdSource) -> Remembered:
            promise_id = ids.entity("pr")
            now = runtime.clock()
            due_at = command.due_at if within is None else due_after(now, within)
            assert due_at is not None
            horizon = policies.for_tenant(tenant).promise_max_horizon
            state, recorded = await customer_command(
                tenant,
                customer_id,
                context(request, f"agent:{command.promised_by}"),
                lambda s: decide_promise_callback(s, command, promise_id, due_at, now, horizon, ids.uuids()),
            )
            return answer(state, tenant, recorded, promise_id=promise_id, due_at=due_at.isoformat())

        return await idempotent(request, tenant, idempotency_key, command, run)

    @app.post(
        "/v1/customers/{customer_id}/promises/{promise_id}/complete",
        tags=["promises"],
        summary="Record that a promise was kept (late when after its due time)",
        responses=COMMON_ERRORS,
    )
    async def complete_callback(
        request: Request,
        customer_id: CustomerId,
        promise_id: PromiseId,
        command: Annotated[CompleteCallback, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return await change_customer(
            request,
            tenant,
            customer_id,
            idempotency_key,
            command,
            f"agent:{command.agent_id}",
            lambda s, new_id: decide_complete_callback(s, promise_id, command, runtime.clock(), new_id),
            lambda s: {"promise_id": promise_id, "status": s.promises[promise_id].status},
        )

    @app.post(
        "/v1/customers/{customer_id}/promises/{promise_id}/cancel",
        tags=["promises"],
        summary="Withdraw a promise, with a reason",
        responses=COMMON_ERRORS,
    )
    async def cancel_callback(
        request: Request,
        customer_id: CustomerId,
        promise_id: PromiseId,
        command: Annotated[CancelCallback, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        actor = f"agent:{command.agent_id}" if command.agent_id else f"api:{tenant}"
        return await change_customer(
            request,
            tenant,
            customer_id,
            idempotency_key,
            command,
            actor,
            lambda s, new_id: decide_cancel_callback(s, promise_id, command, new_id),
            lambda s: {"promise_id": promise_id, "status": s.promises[promise_id].status},
        )

    @app.get("/v1/escalations", tags=["escalations"], summary="Escalations of the tenant, by status")
    async def list_escalations(
        tenant: Tenant,
        status: Annotated[str | None, Query(description="open, acknowledged, resolved; all when omitted")] = None,
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise RuleViolation(
                "invalid",
                "validation",
                f"invalid request: status: one of {', '.join(STATUSES)}",
                errors=[{"field": "status", "location": "query", "reason": f"one of {', '.join(STATUSES)}"}],
            )
        return {"tenant_id": tenant, "items": await escalations.list(tenant, status)}

    @app.post(
        "/v1/escalations/{escalation_id}/acknowledge",
        tags=["escalations"],
        summary="Acknowledge an escalation (supervisors and managers only)",
        responses={403: {"description": "Only a supervisor or manager may acknowledge."}, **COMMON_ERRORS},
    )
    async def acknowledge_escalation(
        request: Request,
        escalation_id: EscalationId,
        command: Annotated[AcknowledgeEscalation, Body()],
        tenant: Tenant,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        async def run(ids: IdSource) -> Remembered:
            found = await escalations.get(tenant, escalation_id)
            if found is None:
                raise RuleViolation("not_found", "escalation_not_found", f"no escalation {escalation_id}")
            agent = (await directory(tenant)).get(command.agent_id)
            state, recorded = await customer_command(
                tenant,
                str(found["customer_id"]),
                context(request, f"agent:{command.agent_id}"),
                lambda s: decide_acknowledge_escalation(s, escalation_id, command, agent, ids.uuids()),
            )
            return answer(state, tenant, recorded, created=False, escalation_id=escalation_id)

        return await idempotent(request, tenant, idempotency_key, command, run)

    @app.get(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        summary="Owner and since when, open contacts with notes, the pending hand-off, open promises",
        responses={404: {"description": "Nothing was ever recorded for this customer."}},
    )
    async def get_customer(
        customer_id: CustomerId,
        tenant: Tenant,
        as_of: Annotated[
            str | None, Query(description="ISO 8601 instant: the customer as it was then (for auditors).")
        ] = None,
    ) -> dict[str, Any]:
        if as_of is not None:
            state = await load_state_as_of(store, tenant, customer_id, parse_as_of(as_of))
        else:
            state = await load_customer(store, tenant, customer_id)
        if not state.exists:
            raise RuleViolation("not_found", "customer_not_found", f"no customer {customer_id} in tenant {tenant}")
        return customer_json(state, tenant)

    add_audit_routes(app, runtime)
    return app
