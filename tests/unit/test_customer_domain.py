"""The customer aggregate's pure decisions: no I/O, a clock and ids passed in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from contracts.commands import OpenContact
from contracts.envelope import EventEnvelope
from contracts.errors import RuleViolation
from contracts.events import ContactOpened, Event, OwnerAssigned, OwnershipCause
from runtime.domain.customer import CustomerState, evolve
from runtime.domain.decisions import decide_open_contact

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def ids():
    counter = itertools.count(1)
    return lambda: UUID(int=next(counter))


def apply_all(state: CustomerState, decided: list[tuple[UUID, Event]]) -> CustomerState:
    for event_id, event in decided:
        envelope = EventEnvelope(
            event_id=event_id,
            tenant_id="t",
            stream=f"customer:{state.customer_id}",
            customer_id=state.customer_id,
            stream_version=state.version + 1,
            event_type=event.event_type,
            schema_version=1,
            occurred_at=T0,
            recorded_at=T0,
            actor="agent:x",
            correlation_id=uuid4(),
            payload=event.model_dump(mode="json"),
        )
        state = evolve(state, envelope, event)
    return state


def test_first_contact_makes_its_agent_the_owner() -> None:
    decided = decide_open_contact(CustomerState("c1"), OpenContact(agent_id="alice"), "ct1", ids())
    assert [type(e) for _, e in decided] == [ContactOpened, OwnerAssigned]
    opened_id, _ = decided[0]
    owner = decided[1][1]
    assert isinstance(owner, OwnerAssigned)
    assert owner.agent_id == "alice" and owner.cause is OwnershipCause.FIRST_CONTACT
    assert owner.cause_event_id == str(opened_id) and owner.previous_agent_id is None
    state = apply_all(CustomerState("c1"), decided)
    assert state.owner is not None and state.owner.agent_id == "alice" and state.owner.since == T0
    assert state.version == 2 and [c.contact_id for c in state.open_contacts] == ["ct1"]


def test_later_contacts_do_not_change_the_owner() -> None:
    state = apply_all(
        CustomerState("c1"),
        decide_open_contact(CustomerState("c1"), OpenContact(agent_id="alice"), "ct1", ids()),
    )
    decided = decide_open_contact(state, OpenContact(agent_id="bob"), "ct2", ids())
    assert [type(e) for _, e in decided] == [ContactOpened]
    state = apply_all(state, decided)
    assert state.owner is not None and state.owner.agent_id == "alice"
    assert len(state.open_contacts) == 2


def test_reopening_the_same_contact_is_a_no_op_for_its_agent_and_refused_for_another() -> None:
    state = apply_all(
        CustomerState("c1"),
        decide_open_contact(CustomerState("c1"), OpenContact(agent_id="alice"), "ct1", ids()),
    )
    assert decide_open_contact(state, OpenContact(agent_id="alice"), "ct1", ids()) == []
    with pytest.raises(RuleViolation) as err:
        decide_open_contact(state, OpenContact(agent_id="bob"), "ct1", ids())
    assert err.value.kind == "conflict" and err.value.rule == "contact_already_exists"
