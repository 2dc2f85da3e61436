"""The customer aggregate: one customer's whole story, folded from its stream.

Every service that needs to know about a customer folds the same events with
``evolve``; decisions (``runtime.domain.decisions``) read this state and return new
events or raise ``RuleViolation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from contracts.envelope import EventEnvelope
from contracts.events import (
    AgentTarget,
    CallbackCancelled,
    CallbackCompleted,
    CallbackPromised,
    ContactOpened,
    EscalationAcknowledged,
    EscalationRaised,
    Event,
    ExternalTarget,
    HandoffAccepted,
    HandoffDeclined,
    HandoffFailed,
    HandoffOffered,
    HandoffRequested,
    HandoffTarget,
    LoopClosed,
    NoteAdded,
    OwnerAssigned,
    PromiseBroken,
)

HANDOFF_PENDING = "pending"  # requested, no live offer
HANDOFF_OFFERED = "offered"  # an offer is live
HANDOFF_ACCEPTED = "accepted"
HANDOFF_FAILED = "failed"
HANDOFF_REFERRED = "referred"  # external: the referring agent keeps ownership
OPEN_HANDOFF_STATUSES = frozenset({HANDOFF_PENDING, HANDOFF_OFFERED})

PROMISE_OPEN = "open"
PROMISE_BROKEN = "broken"  # due time passed; escalated; may still be kept late
PROMISE_KEPT = "kept"
PROMISE_KEPT_LATE = "kept_late"
PROMISE_CANCELLED = "cancelled"
UNRESOLVED_PROMISE_STATUSES = frozenset({PROMISE_OPEN, PROMISE_BROKEN})


@dataclass(frozen=True, slots=True)
class Note:
    """A note taken during a contact."""

    note_id: str
    contact_id: str
    author_id: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class NoteLog:
    """Notes as an immutable linked list, newest first: appending is O(1), so folding a
    long history stays linear while every intermediate state stays unchanged."""

    note: Note
    previous: NoteLog | None = None

    def all(self) -> tuple[Note, ...]:
        """Every note, oldest first."""
        newest_first: list[Note] = []
        node: NoteLog | None = self
        while node is not None:
            newest_first.append(node.note)
            node = node.previous
        return tuple(reversed(newest_first))


@dataclass(frozen=True, slots=True)
class Contact:
    """One contact with the customer."""

    contact_id: str
    agent_id: str
    channel: str
    subject: str | None
    opened_at: datetime
    closed_at: datetime | None = None
    closed_by: str | None = None
    resolution: str | None = None

    @property
    def closed(self) -> bool:
        """True once the owner closed the loop."""
        return self.closed_at is not None


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who is accountable for the customer, since when, and which event made them so."""

    agent_id: str
    since: datetime
    cause: str
    cause_event_id: str
    handoff_id: str | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """One offer of a hand-off to one agent."""

    agent_id: str
    attempt: int
    offered_at: datetime
    expires_at: datetime
    outcome: str | None = None  # accepted | declined | expired
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Handoff:
    """A request to hand the customer to someone else, and what became of it."""

    handoff_id: str
    from_agent_id: str
    target: HandoffTarget
    reason: str
    recap: str
    customer_informed: bool
    requested_at: datetime
    requested_by: str
    status: str
    offers: tuple[Offer, ...] = ()
    accepted_by: str | None = None
    failure: str | None = None
    closed_at: datetime | None = None

    @property
    def live_offer(self) -> Offer | None:
        """The offer waiting for an answer, if any."""
        if self.status != HANDOFF_OFFERED or not self.offers:
            return None
        last = self.offers[-1]
        return last if last.outcome is None else None

    @property
    def offered_agents(self) -> tuple[str, ...]:
        """Every agent this hand-off was offered to, in order."""
        return tuple(o.agent_id for o in self.offers)


@dataclass(frozen=True, slots=True)
class Promise:
    """A callback promise and its fate."""

    promise_id: str
    contact_id: str
    promised_by: str
    responsible_id: str
    due_at: datetime
    channel: str
    what: str
    promised_at: datetime
    status: str = PROMISE_OPEN
    resolved_at: datetime | None = None
    outcome: str | None = None
    escalation_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Escalation:
    """Someone up the ladder was asked to act."""

    escalation_id: str
    level: int
    to_agent_id: str | None
    reason: str
    raised_at: datetime
    promise_id: str | None = None
    handoff_id: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved: bool = False

    @property
    def open(self) -> bool:
        """Neither acknowledged nor resolved by a late kept promise."""
        return self.acknowledged_by is None and not self.resolved


@dataclass(frozen=True, slots=True)
class CustomerState:
    """Everything recorded about one customer, as of ``version``."""

    customer_id: str
    version: int = 0
    owner: Ownership | None = None
    contacts: dict[str, Contact] = field(default_factory=dict)
    note_log: NoteLog | None = None
    handoffs: dict[str, Handoff] = field(default_factory=dict)
    promises: dict[str, Promise] = field(default_factory=dict)
    escalations: dict[str, Escalation] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        """True once anything was recorded for the customer."""
        return self.version > 0

    @property
    def open_contacts(self) -> list[Contact]:
        """Contacts whose loop is not closed yet, oldest first."""
        return [c for c in self.contacts.values() if not c.closed]

    @property
    def pending_handoff(self) -> Handoff | None:
        """The hand-off waiting to be accepted (at most one at a time)."""
        for handoff in self.handoffs.values():
            if handoff.status in OPEN_HANDOFF_STATUSES:
                return handoff
        return None

    @property
    def open_promises(self) -> list[Promise]:
        """Promises not yet kept or cancelled (broken ones can still be kept late)."""
        return [p for p in self.promises.values() if p.status in UNRESOLVED_PROMISE_STATUSES]

    @property
    def notes(self) -> tuple[Note, ...]:
        """Every note, oldest first."""
        return self.note_log.all() if self.note_log else ()

    def notes_of(self, contact_id: str) -> list[Note]:
        """Notes of one contact, in order."""
        return [n for n in self.notes if n.contact_id == contact_id]


def _handoff(state: CustomerState, handoff_id: str) -> Handoff | None:
    return state.handoffs.get(handoff_id)


def _with_handoff(state: CustomerState, handoff: Handoff) -> CustomerState:
    return replace(state, handoffs={**state.handoffs, handoff.handoff_id: handoff})


def _with_promise(state: CustomerState, promise: Promise) -> CustomerState:
    return replace(state, promises={**state.promises, promise.promise_id: promise})


def _with_escalation(state: CustomerState, escalation: Escalation) -> CustomerState:
    return replace(state, escalations={**state.escalations, escalation.escalation_id: escalation})


def _close_last_offer(handoff: Handoff, outcome: str, reason: str | None) -> tuple[Offer, ...]:
    if not handoff.offers or handoff.offers[-1].outcome is not None:
        return handoff.offers
    last = replace(handoff.offers[-1], outcome=outcome, reason=reason)
    return (*handoff.offers[:-1], last)


def evolve(state: CustomerState, envelope: EventEnvelope, event: Event) -> CustomerState:  # noqa: PLR0915
    """Fold one event into the state (unknown or irrelevant events only bump the version)."""
    state = replace(state, version=envelope.stream_version)
    at = envelope.occurred_at
    if isinstance(event, ContactOpened):
        contact = Contact(event.contact_id, event.agent_id, event.channel.value, event.subject, at)
        return replace(state, contacts={**state.contacts, event.contact_id: contact})
    if isinstance(event, NoteAdded):
        note = Note(event.note_id, event.contact_id, event.author_id, event.text, at)
        return replace(state, note_log=NoteLog(note, state.note_log))
    if isinstance(event, LoopClosed) and event.contact_id in state.contacts:
        closed = replace(
            state.contacts[event.contact_id],
            closed_at=at,
            closed_by=event.agent_id,
            resolution=event.resolution,
        )
        return replace(state, contacts={**state.contacts, event.contact_id: closed})
    if isinstance(event, OwnerAssigned):
        owner = Ownership(event.agent_id, at, event.cause.value, str(envelope.event_id), event.handoff_id)
        # Responsibility follows ownership: open promises become the new owner's to keep.
        promises = {
            pid: replace(p, responsible_id=event.agent_id) if p.status in UNRESOLVED_PROMISE_STATUSES else p
            for pid, p in state.promises.items()
        }
        return replace(state, owner=owner, promises=promises)
    if isinstance(event, HandoffRequested):
        external = isinstance(event.target, ExternalTarget)
        handoff = Handoff(
            handoff_id=event.handoff_id,
            from_agent_id=event.from_agent_id,
            target=event.target,
            reason=event.reason.value,
            recap=event.recap,
            customer_informed=event.customer_informed,
            requested_at=at,
            requested_by=envelope.actor,
            status=HANDOFF_REFERRED if external else HANDOFF_PENDING,
            closed_at=at if external else None,
        )
        return _with_handoff(state, handoff)
    if isinstance(event, HandoffOffered):
        found = _handoff(state, event.handoff_id)
        if found is None:
            return state
        offer = Offer(event.agent_id, event.attempt, at, event.expires_at)
        return _with_handoff(state, replace(found, status=HANDOFF_OFFERED, offers=(*found.offers, offer)))
    if isinstance(event, HandoffDeclined):
        found = _handoff(state, event.handoff_id)
        if found is None:
            return state
        outcome = "expired" if event.expired else "declined"
        offers = _close_last_offer(found, outcome, event.reason)
        return _with_handoff(state, replace(found, status=HANDOFF_PENDING, offers=offers))
    if isinstance(event, HandoffAccepted):
        found = _handoff(state, event.handoff_id)
        if found is None:
            return state
        offers = _close_last_offer(found, "accepted", None)
        accepted = replace(found, status=HANDOFF_ACCEPTED, offers=offers, accepted_by=event.agent_id, closed_at=at)
        return _with_handoff(state, accepted)
    if isinstance(event, HandoffFailed):
        found = _handoff(state, event.handoff_id)
        if found is None:
            return state
        return _with_handoff(state, replace(found, status=HANDOFF_FAILED, failure=event.reason, closed_at=at))
    if isinstance(event, CallbackPromised):
        responsible = state.owner.agent_id if state.owner else event.promised_by
        promise = Promise(
            promise_id=event.promise_id,
            contact_id=event.contact_id,
            promised_by=event.promised_by,
            responsible_id=responsible,
            due_at=event.due_at,
            channel=event.channel.value,
            what=event.what,
            promised_at=at,
        )
        return _with_promise(state, promise)
    if isinstance(event, CallbackCompleted) and event.promise_id in state.promises:
        promise = state.promises[event.promise_id]
        status = PROMISE_KEPT_LATE if event.late or promise.status == PROMISE_BROKEN else PROMISE_KEPT
        state = _with_promise(state, replace(promise, status=status, resolved_at=at, outcome=event.outcome))
        # A promise kept late resolves its escalations.
        for escalation_id in promise.escalation_ids:
            if escalation_id in state.escalations:
                state = _with_escalation(state, replace(state.escalations[escalation_id], resolved=True))
        return state
    if isinstance(event, CallbackCancelled) and event.promise_id in state.promises:
        promise = state.promises[event.promise_id]
        return _with_promise(state, replace(promise, status=PROMISE_CANCELLED, resolved_at=at, outcome=event.reason))
    if isinstance(event, PromiseBroken) and event.promise_id in state.promises:
        promise = state.promises[event.promise_id]
        return _with_promise(state, replace(promise, status=PROMISE_BROKEN))
    if isinstance(event, EscalationRaised):
        escalation = Escalation(
            escalation_id=event.escalation_id,
            level=event.level,
            to_agent_id=event.to_agent_id,
            reason=event.reason,
            raised_at=at,
            promise_id=event.promise_id,
            handoff_id=event.handoff_id,
        )
        state = _with_escalation(state, escalation)
        if event.promise_id and event.promise_id in state.promises:
            promise = state.promises[event.promise_id]
            state = _with_promise(
                state, replace(promise, escalation_ids=(*promise.escalation_ids, event.escalation_id))
            )
        return state
    if isinstance(event, EscalationAcknowledged) and event.escalation_id in state.escalations:
        escalation = state.escalations[event.escalation_id]
        return _with_escalation(state, replace(escalation, acknowledged_by=event.agent_id, acknowledged_at=at))
    return state


def target_agent(target: HandoffTarget) -> str | None:
    """The named agent of an agent target (None for other kinds)."""
    return target.agent_id if isinstance(target, AgentTarget) else None
