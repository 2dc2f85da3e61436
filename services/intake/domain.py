"""The customer aggregate as intake sees it: pure decisions and folds.

No I/O and no clock here: the current time and new ids are passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID

from contracts.commands import OpenContact
from contracts.envelope import EventEnvelope
from contracts.errors import RuleViolation
from contracts.events import (
    ContactOpened,
    Event,
    LoopClosed,
    OwnerAssigned,
    OwnershipCause,
)

NewId = Callable[[], UUID]


@dataclass(frozen=True, slots=True)
class Contact:
    """One contact with the customer."""

    contact_id: str
    agent_id: str
    channel: str
    subject: str | None
    opened_at: datetime
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who is accountable for the customer, since when, and which event made them so."""

    agent_id: str
    since: datetime
    cause: str
    cause_event_id: str


@dataclass(frozen=True, slots=True)
class CustomerState:
    """Everything intake needs to decide a command for one customer."""

    customer_id: str
    version: int = 0
    owner: Ownership | None = None
    contacts: dict[str, Contact] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        """True once anything was recorded for the customer."""
        return self.version > 0

    @property
    def open_contacts(self) -> list[Contact]:
        """Contacts whose loop is not closed yet, oldest first."""
        return [c for c in self.contacts.values() if not c.closed]


def evolve(state: CustomerState, envelope: EventEnvelope, event: Event) -> CustomerState:
    """Fold one event into the state."""
    state = replace(state, version=envelope.stream_version)
    if isinstance(event, ContactOpened):
        contact = Contact(
            contact_id=event.contact_id,
            agent_id=event.agent_id,
            channel=event.channel.value,
            subject=event.subject,
            opened_at=envelope.occurred_at,
        )
        return replace(state, contacts={**state.contacts, event.contact_id: contact})
    if isinstance(event, OwnerAssigned):
        owner = Ownership(
            agent_id=event.agent_id,
            since=envelope.occurred_at,
            cause=event.cause.value,
            cause_event_id=str(envelope.event_id),
        )
        return replace(state, owner=owner)
    if isinstance(event, LoopClosed) and event.contact_id in state.contacts:
        closed = replace(state.contacts[event.contact_id], closed=True)
        return replace(state, contacts={**state.contacts, event.contact_id: closed})
    return state


def decide_open_contact(
    state: CustomerState, command: OpenContact, contact_id: str, new_id: NewId
) -> list[tuple[UUID, Event]]:
    """Open a contact; the first contact's agent becomes the owner.

    Re-opening the same contact for the same agent is a no-op (a safe retry); for
    another agent it is refused.
    """
    existing = state.contacts.get(contact_id)
    if existing is not None:
        if existing.agent_id == command.agent_id:
            return []
        raise RuleViolation(
            "conflict",
            "contact_already_exists",
            f"contact {contact_id} already exists for agent {existing.agent_id}",
            contact_id=contact_id,
        )
    opened_id = new_id()
    events: list[tuple[UUID, Event]] = [
        (
            opened_id,
            ContactOpened(
                contact_id=contact_id,
                agent_id=command.agent_id,
                channel=command.channel,
                subject=command.subject,
            ),
        )
    ]
    if state.owner is None:
        events.append(
            (
                new_id(),
                OwnerAssigned(
                    agent_id=command.agent_id,
                    previous_agent_id=None,
                    cause=OwnershipCause.FIRST_CONTACT,
                    cause_event_id=str(opened_id),
                ),
            )
        )
    return events
