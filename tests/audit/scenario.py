"""A realistic customer history written straight through the store API (no services).

Three owners (Ana by first contact, Ben and then Cleo by accepted hand-offs), notes,
two promises (one kept, one broken and escalated to the supervisor). Times are fixed,
so tests can ask for the owner at known moments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from contracts.envelope import EventEnvelope
from contracts.events import (
    AgentRegistered,
    AgentRole,
    AgentTarget,
    CallbackCompleted,
    CallbackPromised,
    ContactOpened,
    EscalationRaised,
    Event,
    HandoffAccepted,
    HandoffOffered,
    HandoffReason,
    HandoffRequested,
    NoteAdded,
    OwnerAssigned,
    OwnershipCause,
    PromiseBroken,
    TeamTarget,
)
from runtime.audit.chain import GENESIS_HASH, chain_links
from runtime.domain.directory import DIRECTORY_STREAM
from runtime.events import EventContext, customer_stream, encode_event, to_envelope
from runtime.store.port import EventStore, RecordedEvent

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

AGENTS = {
    "ana": "Ana Alves",
    "ben": "Ben Brennan",
    "cleo": "Cleo Castillo",
    "sam": "Sam Okafor",
}


def at(minutes: float) -> datetime:
    """``minutes`` after 09:00 on the scenario's day."""
    return T0 + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Step:
    minute: float
    actor: str
    event: Event
    label: str = ""


def steps() -> list[Step]:
    """The scenario, in stream order."""
    return [
        Step(0, "agent:ana", ContactOpened(contact_id="k1", agent_id="ana", subject="Double charge"), "opened"),
        Step(
            0,
            "agent:ana",
            OwnerAssigned(
                agent_id="ana", previous_agent_id=None, cause=OwnershipCause.FIRST_CONTACT, cause_event_id="-"
            ),
            "ana_owner",
        ),
        Step(5, "agent:ana", NoteAdded(contact_id="k1", note_id="n1", author_id="ana", text="Charged twice on 3 Nov")),
        Step(
            10,
            "agent:ana",
            CallbackPromised(
                promise_id="p1", contact_id="k1", promised_by="ana", due_at=at(60), what="Confirm the refund"
            ),
        ),
        Step(
            20,
            "agent:ana",
            HandoffRequested(
                handoff_id="ho1",
                from_agent_id="ana",
                target=TeamTarget(team="billing"),
                reason=HandoffReason.NEEDS_EXPERTISE,
                recap="Double charge; statement received",
                customer_informed=True,
            ),
        ),
        Step(21, "system:routing", HandoffOffered(handoff_id="ho1", agent_id="ben", attempt=1, expires_at=at(26))),
        Step(25, "agent:ben", HandoffAccepted(handoff_id="ho1", agent_id="ben")),
        Step(
            25,
            "agent:ben",
            OwnerAssigned(
                agent_id="ben",
                previous_agent_id="ana",
                cause=OwnershipCause.HANDOFF_ACCEPTED,
                cause_event_id="-",
                handoff_id="ho1",
            ),
            "ben_owner",
        ),
        Step(40, "agent:ben", CallbackCompleted(promise_id="p1", agent_id="ben", outcome="Refund confirmed")),
        Step(
            45,
            "agent:ben",
            CallbackPromised(
                promise_id="p2", contact_id="k1", promised_by="ben", due_at=at(90), what="Send the credit note"
            ),
        ),
        Step(
            60,
            "agent:ben",
            HandoffRequested(
                handoff_id="ho2",
                from_agent_id="ben",
                target=AgentTarget(agent_id="cleo"),
                reason=HandoffReason.NEEDS_AUTHORITY,
                recap="Credit note needs sign-off",
                customer_informed=True,
            ),
        ),
        Step(61, "system:routing", HandoffOffered(handoff_id="ho2", agent_id="cleo", attempt=1, expires_at=at(66))),
        Step(70, "agent:cleo", HandoffAccepted(handoff_id="ho2", agent_id="cleo")),
        Step(
            70,
            "agent:cleo",
            OwnerAssigned(
                agent_id="cleo",
                previous_agent_id="ben",
                cause=OwnershipCause.HANDOFF_ACCEPTED,
                cause_event_id="-",
                handoff_id="ho2",
            ),
            "cleo_owner",
        ),
        Step(90, "system:followup", PromiseBroken(promise_id="p2", due_at=at(90), owner_id="cleo")),
        Step(
            90,
            "system:followup",
            EscalationRaised(escalation_id="e1", level=1, to_agent_id="sam", reason="promise broken", promise_id="p2"),
        ),
        Step(95, "agent:cleo", NoteAdded(contact_id="k1", note_id="n2", author_id="cleo", text="Escalation seen")),
    ]


# (moment, expected owner): before the first contact, and during each owner's time.
OWNERS_AT = [
    (at(-1), None),
    (at(0), "ana"),
    (at(24), "ana"),  # hand-off pending: Ana still owns
    (at(30), "ben"),
    (at(65), "ben"),  # second hand-off offered, not accepted
    (at(70), "cleo"),
    (at(200), "cleo"),
]


async def register_agents(store: EventStore, tenant: str) -> None:
    """Put the scenario's agents in the tenant's directory (names included)."""
    version = await store.stream_version(tenant, DIRECTORY_STREAM)
    ctx = EventContext(actor="api:test", occurred_at=at(-60), correlation_id=uuid4())
    events = [
        encode_event(
            AgentRegistered(
                agent_id=agent_id,
                name=name,
                role=AgentRole.SUPERVISOR if agent_id == "sam" else AgentRole.AGENT,
                supervisor_id=None if agent_id == "sam" else "sam",
            ),
            DIRECTORY_STREAM,
            ctx,
        )
        for agent_id, name in AGENTS.items()
    ]
    await store.append(tenant, DIRECTORY_STREAM, version, events)


async def write_scenario(
    store: EventStore, tenant: str, customer: str, scenario: Sequence[Step] | None = None
) -> dict[str, UUID]:
    """Append the scenario to the customer's stream, one append per step; ids by label."""
    stream = customer_stream(customer)
    labels: dict[str, UUID] = {}
    correlation = uuid4()
    for version, step in enumerate(scenario or steps()):
        ctx = EventContext(actor=step.actor, occurred_at=at(step.minute), correlation_id=correlation)
        new = encode_event(step.event, stream, ctx)
        await store.append(tenant, stream, version, [new])
        if step.label:
            labels[step.label] = new.event_id
    return labels


def records_of(
    tenant: str = "acme", customer: str = "cust-1", scenario: Sequence[Step] | None = None
) -> list[RecordedEvent]:
    """The scenario as stored records (chained), without a store."""
    stream = customer_stream(customer)
    correlation = uuid4()
    new = [
        encode_event(
            step.event, stream, EventContext(actor=step.actor, occurred_at=at(step.minute), correlation_id=correlation)
        )
        for step in scenario or steps()
    ]
    links = chain_links(tenant, stream, 1, GENESIS_HASH, new)
    return [
        RecordedEvent(
            tenant_id=tenant,
            stream=stream,
            version=link.version,
            position=link.version,
            event_id=event.event_id,
            event_type=event.event_type,
            schema_version=event.schema_version,
            data=event.data,
            metadata=event.metadata,
            recorded_at=at(float(link.version) / 100),
            hash=link.hash,
            previous_hash=link.previous_hash,
        )
        for event, link in zip(new, links, strict=True)
    ]


def envelopes_of(scenario: Sequence[Step] | None = None, customer: str = "cust-1") -> list[EventEnvelope]:
    """The scenario as envelopes (what the history functions take)."""
    return [to_envelope(r) for r in records_of(customer=customer, scenario=scenario)]
