"""Decisions on one customer: which events a command yields, or which rule it breaks.

Every function is pure: state, command and facts in (the time, new ids, directory
entries), events out. A refused command raises ``RuleViolation`` and yields nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

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
    RequestHandoff,
)
from contracts.errors import RuleViolation
from contracts.events import (
    AgentRole,
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
    LoopClosed,
    NoteAdded,
    OwnerAssigned,
    OwnershipCause,
    PromiseBroken,
    SupervisorTarget,
    TeamTarget,
)
from runtime.domain.customer import (
    HANDOFF_ACCEPTED,
    HANDOFF_PENDING,
    PROMISE_BROKEN,
    PROMISE_OPEN,
    UNRESOLVED_PROMISE_STATUSES,
    Contact,
    CustomerState,
    Escalation,
    Handoff,
    Offer,
    Promise,
)
from runtime.domain.directory import Agent

NewId = Callable[[], UUID]
Decided = list[tuple[UUID, Event]]


def require_customer(state: CustomerState) -> None:
    """404 unless something was recorded for the customer."""
    if not state.exists:
        raise RuleViolation("not_found", "customer_not_found", f"no customer {state.customer_id}")


def require_contact(state: CustomerState, contact_id: str) -> Contact:
    """404 unless the customer has that contact."""
    require_customer(state)
    contact = state.contacts.get(contact_id)
    if contact is None:
        raise RuleViolation(
            "not_found", "contact_not_found", f"customer {state.customer_id} has no contact {contact_id}"
        )
    return contact


def require_handoff(state: CustomerState, handoff_id: str) -> Handoff:
    """404 unless the customer has that hand-off."""
    require_customer(state)
    handoff = state.handoffs.get(handoff_id)
    if handoff is None:
        raise RuleViolation(
            "not_found", "handoff_not_found", f"customer {state.customer_id} has no hand-off {handoff_id}"
        )
    return handoff


def owner_id(state: CustomerState) -> str:
    """The current owner (every existing customer has exactly one)."""
    require_customer(state)
    assert state.owner is not None, "an existing customer always has an owner"
    return state.owner.agent_id


# --- contacts and notes -------------------------------------------------------------


def decide_open_contact(state: CustomerState, command: OpenContact, contact_id: str, new_id: NewId) -> Decided:
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
    events: Decided = [
        (
            opened_id,
            ContactOpened(
                contact_id=contact_id, agent_id=command.agent_id, channel=command.channel, subject=command.subject
            ),
        )
    ]
    if state.owner is None:
        owner = OwnerAssigned(
            agent_id=command.agent_id,
            previous_agent_id=None,
            cause=OwnershipCause.FIRST_CONTACT,
            cause_event_id=str(opened_id),
        )
        events.append((new_id(), owner))
    return events


def decide_add_note(state: CustomerState, contact_id: str, command: AddNote, note_id: str, new_id: NewId) -> Decided:
    """Take a note on an open contact."""
    contact = require_contact(state, contact_id)
    if contact.closed:
        raise RuleViolation("conflict", "contact_closed", f"contact {contact_id} is closed: its loop was closed")
    note = NoteAdded(contact_id=contact_id, note_id=note_id, author_id=command.author_id, text=command.text)
    return [(new_id(), note)]


def decide_close_loop(state: CustomerState, contact_id: str, command: CloseLoop, new_id: NewId) -> Decided:
    """Only the owner closes the loop, and only when nothing is left open on the contact."""
    contact = require_contact(state, contact_id)
    owner = owner_id(state)
    if command.agent_id != owner:
        raise RuleViolation(
            "forbidden", "only_owner_closes_loop", f"only the owner ({owner}) may close the loop", owner_id=owner
        )
    if contact.closed:
        raise RuleViolation("conflict", "contact_already_closed", f"contact {contact_id} is already closed")
    pending = state.pending_handoff
    if pending is not None:
        raise RuleViolation(
            "conflict",
            "pending_handoff",
            f"hand-off {pending.handoff_id} is still pending: accept, decline or let it fail first",
            pending_handoffs=[pending.handoff_id],
        )
    open_promises = [p.promise_id for p in state.open_promises if p.contact_id == contact_id]
    if open_promises:
        raise RuleViolation(
            "conflict",
            "open_promises",
            f"contact {contact_id} has open promises: {', '.join(open_promises)}; keep or cancel them first",
            open_promises=open_promises,
        )
    return [(new_id(), LoopClosed(contact_id=contact_id, agent_id=command.agent_id, resolution=command.resolution))]


# --- hand-offs ----------------------------------------------------------------------


def decide_request_handoff(
    state: CustomerState,
    command: RequestHandoff,
    handoff_id: str,
    new_id: NewId,
    owner_entry: Agent | None,
    requester: Agent | None,
    target_agent: Agent | None,
) -> Decided:
    """A warm hand-off: requested by the owner (or their supervisor), customer told first,
    recap given, one at a time. ``*_entry`` are the directory entries involved."""
    owner = owner_id(state)
    supervisor = owner_entry.supervisor_id if owner_entry else None
    if command.from_agent_id not in {owner, supervisor}:
        raise RuleViolation(
            "forbidden",
            "only_owner_may_hand_off",
            f"only the owner ({owner}) or their supervisor may request a hand-off",
            owner_id=owner,
        )
    if handoff_id in state.handoffs:
        raise RuleViolation("conflict", "handoff_id_in_use", f"hand-off {handoff_id} already exists")
    pending = state.pending_handoff
    if pending is not None:
        raise RuleViolation(
            "conflict",
            "one_pending_handoff",
            f"hand-off {pending.handoff_id} is still pending; one hand-off at a time",
            pending_handoff_id=pending.handoff_id,
        )
    if not command.customer_informed:
        raise RuleViolation(
            "conflict",
            "customer_must_be_informed",
            "a warm hand-off tells the customer first: set customer_informed once they know",
        )
    target = command.target
    if isinstance(target, AgentTarget):
        if target_agent is None or not target_agent.exists:
            raise RuleViolation("invalid", "unknown_agent", f"no agent {target.agent_id} in the directory")
        if target.agent_id == owner:
            raise RuleViolation("conflict", "handoff_to_owner", f"{owner} already owns this customer")
    if isinstance(target, SupervisorTarget) and (requester is None or not requester.supervisor_id):
        raise RuleViolation("conflict", "no_supervisor", f"{command.from_agent_id} has no supervisor in the directory")
    requested = HandoffRequested(
        handoff_id=handoff_id,
        from_agent_id=command.from_agent_id,
        target=command.target,
        reason=command.reason,
        recap=command.recap,
        customer_informed=command.customer_informed,
    )
    return [(new_id(), requested)]


def _live_offer_for(handoff: Handoff, agent_id: str, now: datetime) -> Offer:
    if handoff.status == HANDOFF_ACCEPTED:
        raise RuleViolation(
            "conflict",
            "handoff_already_accepted",
            f"hand-off {handoff.handoff_id} was already accepted by {handoff.accepted_by}",
        )
    offer = handoff.live_offer
    if offer is None:
        raise RuleViolation(
            "conflict", "no_live_offer", f"hand-off {handoff.handoff_id} has no offer waiting ({handoff.status})"
        )
    if offer.agent_id != agent_id:
        raise RuleViolation(
            "forbidden", "offer_is_for_another_agent", f"hand-off {handoff.handoff_id} is offered to another agent"
        )
    if now >= offer.expires_at:
        raise RuleViolation("conflict", "offer_expired", f"the offer expired at {offer.expires_at.isoformat()}")
    return offer


def decide_accept_handoff(
    state: CustomerState, handoff_id: str, command: AcceptHandoff, now: datetime, new_id: NewId
) -> Decided:
    """The offered agent accepts: they become owner through OwnerAssigned."""
    handoff = require_handoff(state, handoff_id)
    _live_offer_for(handoff, command.agent_id, now)
    accepted_id = new_id()
    previous = owner_id(state)
    return [
        (accepted_id, HandoffAccepted(handoff_id=handoff_id, agent_id=command.agent_id)),
        (
            new_id(),
            OwnerAssigned(
                agent_id=command.agent_id,
                previous_agent_id=previous,
                cause=OwnershipCause.HANDOFF_ACCEPTED,
                cause_event_id=str(accepted_id),
                handoff_id=handoff_id,
                promises_transferred=[p.promise_id for p in state.open_promises],
            ),
        ),
    ]


def decide_decline_handoff(
    state: CustomerState, handoff_id: str, command: DeclineHandoff, now: datetime, new_id: NewId
) -> Decided:
    """The offered agent declines; routing offers the next candidate."""
    handoff = require_handoff(state, handoff_id)
    _live_offer_for(handoff, command.agent_id, now)
    return [(new_id(), HandoffDeclined(handoff_id=handoff_id, agent_id=command.agent_id, reason=command.reason))]


# --- routing's decisions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingFacts:
    """What routing knows besides the customer's stream when it decides an offer."""

    now: datetime
    offer_ttl: timedelta
    candidates: Sequence[str]
    """Eligible agents, best first (see ``rank_candidates``)."""
    escalate_to: str | None
    """Who hears about a failed hand-off: the requesting agent's supervisor."""


def rank_candidates(handoff: Handoff, owner: str, directory: Sequence[Agent], workload: dict[str, int]) -> list[str]:
    """Agents to offer a hand-off to, best first.

    Policy: only available agents; never the owner or the requester; for a team or skill,
    the member with the least open work (customers owned) first, ties by agent id; for a
    named agent, that agent; for a supervisor, the requester's supervisor, then that
    supervisor's own supervisor (the manager). External targets have no candidates.
    """
    by_id = {a.agent_id: a for a in directory}
    excluded = {owner, handoff.from_agent_id}
    target = handoff.target
    if isinstance(target, AgentTarget):
        chain = [target.agent_id]
    elif isinstance(target, TeamTarget):
        members = [a for a in directory if a.serves(target.team)]
        members.sort(key=lambda a: (workload.get(a.agent_id, 0), a.agent_id))
        chain = [a.agent_id for a in members]
    elif isinstance(target, SupervisorTarget):
        chain = []
        requester = by_id.get(handoff.from_agent_id)
        boss = by_id.get(requester.supervisor_id) if requester and requester.supervisor_id else None
        while boss is not None and boss.agent_id not in chain and len(chain) < 2:
            chain.append(boss.agent_id)
            boss = by_id.get(boss.supervisor_id) if boss.supervisor_id else None
    else:
        assert isinstance(target, ExternalTarget)
        return []
    return [a for a in chain if a not in excluded and a in by_id and by_id[a].available]


def escalation_id_for_handoff(handoff_id: str) -> str:
    """The id of the escalation raised when a hand-off fails (one per hand-off)."""
    return f"esc-{handoff_id}"


def decide_next_offer(state: CustomerState, handoff_id: str, facts: RoutingFacts, new_id: NewId) -> Decided:
    """Offer a pending hand-off to the next candidate not yet asked, or fail it and
    escalate to the requester's supervisor. Nothing to do unless the hand-off is pending."""
    handoff = state.handoffs.get(handoff_id)
    if handoff is None or handoff.status != HANDOFF_PENDING:
        return []
    asked = set(handoff.offered_agents)
    for agent_id in facts.candidates:
        if agent_id not in asked:
            offer = HandoffOffered(
                handoff_id=handoff_id,
                agent_id=agent_id,
                attempt=len(handoff.offers) + 1,
                expires_at=facts.now + facts.offer_ttl,
            )
            return [(new_id(), offer)]
    reason = "every candidate declined or let the offer expire" if asked else "no available agent to offer it to"
    return [
        (new_id(), HandoffFailed(handoff_id=handoff_id, reason=reason)),
        (
            new_id(),
            EscalationRaised(
                escalation_id=escalation_id_for_handoff(handoff_id),
                level=1,
                to_agent_id=facts.escalate_to,
                reason=f"hand-off failed: {reason}",
                handoff_id=handoff_id,
            ),
        ),
    ]


def decide_expire_offer(state: CustomerState, handoff_id: str, attempt: int, now: datetime, new_id: NewId) -> Decided:
    """Record that an offer ran out without an answer (only if it is still live and due)."""
    handoff = state.handoffs.get(handoff_id)
    offer = handoff.live_offer if handoff else None
    if offer is None or offer.attempt != attempt or now < offer.expires_at:
        return []
    return [
        (
            new_id(),
            HandoffDeclined(handoff_id=handoff_id, agent_id=offer.agent_id, reason="offer expired", expired=True),
        )
    ]


# --- promises and escalations -----------------------------------------------------------


def require_promise(state: CustomerState, promise_id: str) -> Promise:
    """404 unless the customer has that promise."""
    require_customer(state)
    promise = state.promises.get(promise_id)
    if promise is None:
        raise RuleViolation(
            "not_found", "promise_not_found", f"customer {state.customer_id} has no promise {promise_id}"
        )
    return promise


def _require_unresolved(promise: Promise) -> None:
    if promise.status not in UNRESOLVED_PROMISE_STATUSES:
        raise RuleViolation(
            "conflict",
            "promise_already_resolved",
            f"promise {promise.promise_id} is already {promise.status.replace('_', ' ')}",
            status=promise.status,
        )


def decide_promise_callback(
    state: CustomerState,
    command: PromiseCallback,
    promise_id: str,
    due_at: datetime,
    now: datetime,
    max_horizon: timedelta,
    new_id: NewId,
) -> Decided:
    """Promise a callback on an open contact, due in the future and within the horizon."""
    contact = require_contact(state, command.contact_id)
    if contact.closed:
        raise RuleViolation("conflict", "contact_closed", f"contact {command.contact_id} is closed")
    if promise_id in state.promises:
        raise RuleViolation("conflict", "promise_id_in_use", f"promise {promise_id} already exists")
    if due_at <= now:
        raise RuleViolation(
            "invalid",
            "due_time_in_past",
            f"a promise must be due in the future (due {due_at.isoformat()}, now {now.isoformat()})",
            errors=[{"field": "due_at", "location": "body", "reason": "must be in the future"}],
        )
    if due_at > now + max_horizon:
        raise RuleViolation(
            "invalid",
            "due_time_beyond_horizon",
            f"a promise may be due at most {max_horizon} ahead; don't make promises you can't keep",
            errors=[{"field": "due_at", "location": "body", "reason": f"beyond the {max_horizon} horizon"}],
        )
    promised = CallbackPromised(
        promise_id=promise_id,
        contact_id=command.contact_id,
        promised_by=command.promised_by,
        due_at=due_at,
        channel=command.channel,
        what=command.what,
    )
    return [(new_id(), promised)]


def decide_complete_callback(
    state: CustomerState, promise_id: str, command: CompleteCallback, now: datetime, new_id: NewId
) -> Decided:
    """Record a kept promise; after its due time it is kept late (and resolves escalations)."""
    promise = require_promise(state, promise_id)
    _require_unresolved(promise)
    late = now > promise.due_at or promise.status == PROMISE_BROKEN
    done = CallbackCompleted(promise_id=promise_id, agent_id=command.agent_id, outcome=command.outcome, late=late)
    return [(new_id(), done)]


def decide_cancel_callback(state: CustomerState, promise_id: str, command: CancelCallback, new_id: NewId) -> Decided:
    """Withdraw a promise with a reason."""
    promise = require_promise(state, promise_id)
    _require_unresolved(promise)
    return [(new_id(), CallbackCancelled(promise_id=promise_id, agent_id=command.agent_id, reason=command.reason))]


def escalation_id_for_promise(promise_id: str, level: int) -> str:
    """The id of a promise's escalation at a level (one per promise and level)."""
    return f"esc-{promise_id}-{level}"


def decide_promise_due(
    state: CustomerState, promise_id: str, now: datetime, escalate_to: str | None, new_id: NewId
) -> Decided:
    """At the due time, an unkept promise is broken and escalated to level 1 (the owner's
    supervisor). Nothing to do if it was kept, cancelled or already broken, or not due."""
    promise = state.promises.get(promise_id)
    if promise is None or promise.status != PROMISE_OPEN or now < promise.due_at:
        return []
    return [
        (new_id(), PromiseBroken(promise_id=promise_id, due_at=promise.due_at, owner_id=promise.responsible_id)),
        (
            new_id(),
            EscalationRaised(
                escalation_id=escalation_id_for_promise(promise_id, 1),
                level=1,
                to_agent_id=escalate_to,
                reason=f"promise not kept by {promise.due_at.isoformat()}: {promise.what}",
                promise_id=promise_id,
            ),
        ),
    ]


def decide_escalate_further(
    state: CustomerState, escalation_id: str, escalate_to: str | None, new_id: NewId
) -> Decided:
    """An escalation nobody acknowledged climbs one level (to the supervisor's manager)."""
    escalation = state.escalations.get(escalation_id)
    if escalation is None or not escalation.open or escalation.promise_id is None:
        return []
    promise = state.promises.get(escalation.promise_id)
    if promise is None or promise.status != PROMISE_BROKEN:
        return []
    next_id = escalation_id_for_promise(escalation.promise_id, escalation.level + 1)
    if next_id in state.escalations:
        return []
    raised = EscalationRaised(
        escalation_id=next_id,
        level=escalation.level + 1,
        to_agent_id=escalate_to,
        reason=f"level {escalation.level} escalation {escalation_id} was not acknowledged",
        promise_id=escalation.promise_id,
    )
    return [(new_id(), raised)]


def decide_acknowledge_escalation(
    state: CustomerState, escalation_id: str, command: AcknowledgeEscalation, agent: Agent | None, new_id: NewId
) -> Decided:
    """A supervisor or manager takes note of an escalation (once)."""
    require_customer(state)
    escalation: Escalation | None = state.escalations.get(escalation_id)
    if escalation is None:
        raise RuleViolation("not_found", "escalation_not_found", f"no escalation {escalation_id}")
    if agent is None or agent.role not in {AgentRole.SUPERVISOR.value, AgentRole.MANAGER.value}:
        raise RuleViolation(
            "forbidden",
            "only_supervisors_acknowledge",
            "only a supervisor or a manager may acknowledge an escalation",
        )
    if escalation.acknowledged_by is not None:
        raise RuleViolation(
            "conflict",
            "escalation_already_acknowledged",
            f"escalation {escalation_id} was acknowledged by {escalation.acknowledged_by}",
        )
    return [(new_id(), EscalationAcknowledged(escalation_id=escalation_id, agent_id=command.agent_id))]
