"""A customer's history as an auditor reads it: pure functions over the stream's envelopes.

Everything here folds with ``runtime.domain.customer.evolve``, the same fold every
service uses, so an audit can never disagree with what the services decided:

- ``timeline``: every event in stream order with who caused it and the owner after it;
- ``ownership_periods``: who owned the customer from when to when, and which event
  made them owner (and which ended it);
- ``state_as_of``/``owner_as_of``: the state at a moment, i.e. after the longest prefix
  of the stream whose events occurred at or before it (the stream order is the order
  decisions were made in, so a prefix is always a state that really existed);
- ``promise_fates``: every callback promise and its fate (kept, kept late, broken and
  escalated, cancelled, or still open).

Times are the events' occurred-at times (the business time in the covered metadata).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    LoopClosed,
    NoteAdded,
    OwnerAssigned,
    PromiseBroken,
    SupervisorTarget,
    TeamTarget,
    UnknownEventType,
)
from runtime.domain.customer import (
    PROMISE_BROKEN,
    PROMISE_CANCELLED,
    PROMISE_KEPT,
    PROMISE_KEPT_LATE,
    PROMISE_OPEN,
    CustomerState,
    Ownership,
    evolve,
)
from runtime.events import payload_of

Decode = Callable[[EventEnvelope], Event]
"""How an envelope's payload becomes a typed event (default ``runtime.events.payload_of``)."""

FATE_KEPT = "kept"
FATE_KEPT_LATE = "kept_late"
FATE_BROKEN_AND_ESCALATED = "broken_and_escalated"
FATE_BROKEN = "broken"  # due time passed, not escalated (yet)
FATE_CANCELLED = "cancelled"
FATE_OPEN = "open"
FATE_LABELS = {
    FATE_KEPT: "kept",
    FATE_KEPT_LATE: "kept late",
    FATE_BROKEN_AND_ESCALATED: "broken and escalated",
    FATE_BROKEN: "broken",
    FATE_CANCELLED: "cancelled",
    FATE_OPEN: "open",
}

CATEGORIES = ("contact", "note", "handoff", "ownership", "promise", "escalation", "other")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One event as an auditor reads it."""

    version: int
    event_id: str
    event_type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    category: str
    summary: str
    owner_after: str | None
    promise_id: str | None = None
    handoff_id: str | None = None
    escalation_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "version": self.version,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "actor": self.actor,
            "category": self.category,
            "summary": self.summary,
            "owner_after": self.owner_after,
            "promise_id": self.promise_id,
            "handoff_id": self.handoff_id,
            "escalation_id": self.escalation_id,
        }


@dataclass(frozen=True, slots=True)
class OwnershipPeriod:
    """One owner's time: from the event that made them owner to the one that ended it."""

    owner: str
    since: datetime
    until: datetime | None
    cause: str
    cause_event_id: str
    cause_version: int
    previous_owner: str | None
    handoff_id: str | None = None
    handoff_reason: str | None = None
    ended_by_event_id: str | None = None

    @property
    def current(self) -> bool:
        """True for the owner now (the period has not ended)."""
        return self.until is None

    def covers(self, moment: datetime) -> bool:
        """Whether the owner owned the customer at ``moment``."""
        return self.since <= moment and (self.until is None or moment < self.until)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "owner": self.owner,
            "from": self.since.isoformat(),
            "to": self.until.isoformat() if self.until else None,
            "cause": self.cause,
            "cause_event_id": self.cause_event_id,
            "cause_version": self.cause_version,
            "previous_owner": self.previous_owner,
            "handoff_id": self.handoff_id,
            "handoff_reason": self.handoff_reason,
            "ended_by_event_id": self.ended_by_event_id,
        }


@dataclass(frozen=True, slots=True)
class EscalationInfo:
    """An escalation raised for a promise."""

    escalation_id: str
    level: int
    to_agent_id: str | None
    raised_at: datetime
    acknowledged_by: str | None
    resolved: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "escalation_id": self.escalation_id,
            "level": self.level,
            "to_agent_id": self.to_agent_id,
            "raised_at": self.raised_at.isoformat(),
            "acknowledged_by": self.acknowledged_by,
            "resolved": self.resolved,
        }


@dataclass(frozen=True, slots=True)
class PromiseFate:
    """A callback promise and what became of it."""

    promise_id: str
    contact_id: str
    promised_by: str
    responsible_id: str
    promised_at: datetime
    due_at: datetime
    what: str
    channel: str
    fate: str
    broken_at: datetime | None = None
    resolved_at: datetime | None = None
    outcome: str | None = None
    escalations: tuple[EscalationInfo, ...] = ()

    @property
    def label(self) -> str:
        """The fate in words."""
        return FATE_LABELS[self.fate]

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "promise_id": self.promise_id,
            "contact_id": self.contact_id,
            "promised_by": self.promised_by,
            "responsible_id": self.responsible_id,
            "promised_at": self.promised_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "what": self.what,
            "channel": self.channel,
            "fate": self.fate,
            "fate_label": self.label,
            "broken_at": self.broken_at.isoformat() if self.broken_at else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "outcome": self.outcome,
            "escalations": [e.as_dict() for e in self.escalations],
        }


@dataclass(frozen=True, slots=True)
class AsOf:
    """The state at a moment: the owner, since when, and the event that made them owner."""

    moment: datetime
    state: CustomerState
    events_applied: int
    cause_event: TimelineEntry | None

    @property
    def owner(self) -> str | None:
        """The owner at the moment (None before the first contact)."""
        return self.state.owner.agent_id if self.state.owner else None

    @property
    def since(self) -> datetime | None:
        """Since when the owner owned the customer."""
        return self.state.owner.since if self.state.owner else None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        owner = self.state.owner
        return {
            "as_of": self.moment.isoformat(),
            "version": self.state.version,
            "events_applied": self.events_applied,
            "owner": None
            if owner is None
            else {
                "agent_id": owner.agent_id,
                "since": owner.since.isoformat(),
                "cause": owner.cause,
                "cause_event_id": owner.cause_event_id,
                "handoff_id": owner.handoff_id,
            },
            "cause_event": self.cause_event.as_dict() if self.cause_event else None,
            "open_promises": [
                {"promise_id": p.promise_id, "due_at": p.due_at.isoformat(), "status": p.status}
                for p in self.state.open_promises
            ],
            "open_contacts": [c.contact_id for c in self.state.open_contacts],
        }


@dataclass(frozen=True, slots=True)
class History:
    """A customer's whole audited history."""

    customer_id: str
    entries: tuple[TimelineEntry, ...]
    periods: tuple[OwnershipPeriod, ...]
    promises: tuple[PromiseFate, ...]
    state: CustomerState
    undecodable: tuple[int, ...] = field(default=())
    """Versions whose type or schema version this code does not know (listed, not folded)."""


# --- describing events ------------------------------------------------------------------


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _target(target: object) -> str:
    if isinstance(target, AgentTarget):
        return f"agent {target.agent_id}"
    if isinstance(target, TeamTarget):
        return f"team {target.team}"
    if isinstance(target, SupervisorTarget):
        return "the supervisor"
    if isinstance(target, ExternalTarget):
        return f"outside organisation {target.organisation}"
    return "?"


def describe(event: Event) -> tuple[str, str]:
    """The category and a one-line summary of an event."""
    if isinstance(event, ContactOpened):
        subject = f": {_short(event.subject, 60)}" if event.subject else ""
        return "contact", f"contact {event.contact_id} opened by {event.agent_id} ({event.channel.value}){subject}"
    if isinstance(event, NoteAdded):
        return "note", f"note by {event.author_id}: {_short(event.text)}"
    if isinstance(event, LoopClosed):
        return "contact", f"loop closed on {event.contact_id} by {event.agent_id}: {_short(event.resolution, 60)}"
    if isinstance(event, HandoffRequested):
        return (
            "handoff",
            f"hand-off {event.handoff_id} requested by {event.from_agent_id} to {_target(event.target)} "
            f"({event.reason.value})",
        )
    if isinstance(event, HandoffOffered):
        return "handoff", f"hand-off {event.handoff_id} offered to {event.agent_id} (attempt {event.attempt})"
    if isinstance(event, HandoffAccepted):
        return "handoff", f"hand-off {event.handoff_id} accepted by {event.agent_id}"
    if isinstance(event, HandoffDeclined):
        how = "offer expired for" if event.expired else "declined by"
        return "handoff", f"hand-off {event.handoff_id} {how} {event.agent_id}: {_short(event.reason, 60)}"
    if isinstance(event, HandoffFailed):
        return "handoff", f"hand-off {event.handoff_id} failed: {_short(event.reason, 60)}"
    if isinstance(event, OwnerAssigned):
        before = f" (was {event.previous_agent_id})" if event.previous_agent_id else ""
        return "ownership", f"owner is now {event.agent_id}{before}: {event.cause.value}"
    if isinstance(event, CallbackPromised):
        return (
            "promise",
            f"promise {event.promise_id} by {event.promised_by}, due {event.due_at.isoformat()}: {_short(event.what)}",
        )
    if isinstance(event, CallbackCompleted):
        late = " late" if event.late else ""
        return "promise", f"promise {event.promise_id} kept{late} by {event.agent_id}: {_short(event.outcome, 60)}"
    if isinstance(event, CallbackCancelled):
        return "promise", f"promise {event.promise_id} cancelled: {_short(event.reason, 60)}"
    if isinstance(event, PromiseBroken):
        return "promise", f"promise {event.promise_id} broken (due {event.due_at.isoformat()}, owner {event.owner_id})"
    if isinstance(event, EscalationRaised):
        about = f" about promise {event.promise_id}" if event.promise_id else ""
        about += f" about hand-off {event.handoff_id}" if event.handoff_id else ""
        to = event.to_agent_id or "nobody (top of the ladder)"
        return "escalation", f"escalation {event.escalation_id} level {event.level} to {to}{about}: {event.reason}"
    if isinstance(event, EscalationAcknowledged):
        return "escalation", f"escalation {event.escalation_id} acknowledged by {event.agent_id}"
    return "other", event.event_type


# --- folding ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    """One event and what the audit needs from the fold around it. (Not the states
    themselves: keeping every intermediate state alive would cost memory quadratic in
    the stream's length.)"""

    envelope: EventEnvelope
    event: Event | None
    owner_before: Ownership | None
    owner_after: Ownership | None
    handoff_reason: str | None = None
    """When this event changed the owner through a hand-off: the hand-off's reason."""


@dataclass(frozen=True, slots=True)
class _Walk:
    steps: list[_Step]
    final: CustomerState


def _walk(envelopes: Iterable[EventEnvelope], customer_id: str, decode: Decode) -> _Walk:
    state = CustomerState(customer_id)
    steps: list[_Step] = []
    for envelope in envelopes:
        try:
            event: Event | None = decode(envelope)
        except UnknownEventType:
            event = None
        before = state.owner
        if event is not None:
            state = evolve(state, envelope, event)
        after = state.owner
        reason = None
        if after is not None and after is not before and after.handoff_id in state.handoffs:
            reason = state.handoffs[after.handoff_id].reason
        steps.append(_Step(envelope, event, before, after, reason))
    return _Walk(steps, state)


def _customer_id(envelopes: Sequence[EventEnvelope], customer_id: str | None) -> str:
    if customer_id is not None:
        return customer_id
    for envelope in envelopes:
        if envelope.customer_id:
            return envelope.customer_id
    return ""


def _entry(step: _Step) -> TimelineEntry:
    envelope, event = step.envelope, step.event
    if event is None:
        category, summary = "other", f"{envelope.event_type} v{envelope.schema_version} (unknown: not interpreted)"
    else:
        category, summary = describe(event)
    return TimelineEntry(
        version=envelope.stream_version,
        event_id=str(envelope.event_id),
        event_type=envelope.event_type,
        schema_version=envelope.schema_version,
        occurred_at=envelope.occurred_at,
        recorded_at=envelope.recorded_at,
        actor=envelope.actor,
        category=category,
        summary=summary,
        owner_after=step.owner_after.agent_id if step.owner_after else None,
        promise_id=_field(event, "promise_id"),
        handoff_id=_field(event, "handoff_id"),
        escalation_id=_field(event, "escalation_id"),
    )


def _field(event: Event | None, name: str) -> str | None:
    """A payload field if the event has it (read from the model's fields: ``getattr`` on a
    pydantic model without the attribute costs microseconds, and this runs per event)."""
    if event is None:
        return None
    value = vars(event).get(name)
    return None if value is None else str(value)


def _periods(steps: Sequence[_Step]) -> list[OwnershipPeriod]:
    periods: list[OwnershipPeriod] = []
    for step in steps:
        before, after = step.owner_before, step.owner_after
        if after is None or (before is not None and before.cause_event_id == after.cause_event_id):
            continue
        if periods:
            periods[-1] = _end(periods[-1], after.since, after.cause_event_id)
        periods.append(
            OwnershipPeriod(
                owner=after.agent_id,
                since=after.since,
                until=None,
                cause=after.cause,
                cause_event_id=after.cause_event_id,
                cause_version=step.envelope.stream_version,
                previous_owner=before.agent_id if before else None,
                handoff_id=after.handoff_id,
                handoff_reason=step.handoff_reason,
            )
        )
    return periods


def _end(period: OwnershipPeriod, until: datetime, event_id: str) -> OwnershipPeriod:
    return OwnershipPeriod(
        owner=period.owner,
        since=period.since,
        until=until,
        cause=period.cause,
        cause_event_id=period.cause_event_id,
        cause_version=period.cause_version,
        previous_owner=period.previous_owner,
        handoff_id=period.handoff_id,
        handoff_reason=period.handoff_reason,
        ended_by_event_id=event_id,
    )


def _fates(walk: _Walk) -> list[PromiseFate]:
    steps, final = walk.steps, walk.final
    broken_at: dict[str, datetime] = {}
    for step in steps:
        if isinstance(step.event, PromiseBroken):
            broken_at.setdefault(step.event.promise_id, step.envelope.occurred_at)
    fates = []
    for promise in final.promises.values():
        escalations = tuple(
            EscalationInfo(
                escalation_id=e.escalation_id,
                level=e.level,
                to_agent_id=e.to_agent_id,
                raised_at=e.raised_at,
                acknowledged_by=e.acknowledged_by,
                resolved=e.resolved,
            )
            for e in (final.escalations.get(i) for i in promise.escalation_ids)
            if e is not None
        )
        fates.append(
            PromiseFate(
                promise_id=promise.promise_id,
                contact_id=promise.contact_id,
                promised_by=promise.promised_by,
                responsible_id=promise.responsible_id,
                promised_at=promise.promised_at,
                due_at=promise.due_at,
                what=promise.what,
                channel=promise.channel,
                fate=_fate(promise.status, bool(escalations)),
                broken_at=broken_at.get(promise.promise_id),
                resolved_at=promise.resolved_at,
                outcome=promise.outcome,
                escalations=escalations,
            )
        )
    return fates


def _fate(status: str, escalated: bool) -> str:
    return {
        PROMISE_KEPT: FATE_KEPT,
        PROMISE_KEPT_LATE: FATE_KEPT_LATE,
        PROMISE_CANCELLED: FATE_CANCELLED,
        PROMISE_OPEN: FATE_OPEN,
        PROMISE_BROKEN: FATE_BROKEN_AND_ESCALATED if escalated else FATE_BROKEN,
    }.get(status, status)


# --- the public functions -------------------------------------------------------------------


def replay(envelopes: Sequence[EventEnvelope], customer_id: str | None = None, decode: Decode = payload_of) -> History:
    """The whole history of one customer from its stream's envelopes (in stream order)."""
    walk = _walk(envelopes, _customer_id(envelopes, customer_id), decode)
    return History(
        customer_id=walk.final.customer_id,
        entries=tuple(_entry(s) for s in walk.steps),
        periods=tuple(_periods(walk.steps)),
        promises=tuple(_fates(walk)),
        state=walk.final,
        undecodable=tuple(s.envelope.stream_version for s in walk.steps if s.event is None),
    )


def timeline(envelopes: Sequence[EventEnvelope], decode: Decode = payload_of) -> list[TimelineEntry]:
    """Every event in stream order, with the owner after it."""
    return [_entry(s) for s in _walk(envelopes, _customer_id(envelopes, None), decode).steps]


def ownership_periods(envelopes: Sequence[EventEnvelope], decode: Decode = payload_of) -> list[OwnershipPeriod]:
    """Who owned the customer from when to when, oldest first; the last one is current."""
    return _periods(_walk(envelopes, _customer_id(envelopes, None), decode).steps)


def promise_fates(envelopes: Sequence[EventEnvelope], decode: Decode = payload_of) -> list[PromiseFate]:
    """Every promise (in the order made) and its fate after all the events."""
    return _fates(_walk(envelopes, _customer_id(envelopes, None), decode))


def prefix_until(envelopes: Sequence[EventEnvelope], moment: datetime) -> list[EventEnvelope]:
    """The longest prefix of the stream whose events occurred at or before ``moment``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"as-of moments must be timezone-aware, got {moment!r}")
    prefix: list[EventEnvelope] = []
    for envelope in envelopes:
        if envelope.occurred_at > moment:
            break
        prefix.append(envelope)
    return prefix


def state_as_of(
    envelopes: Sequence[EventEnvelope],
    moment: datetime,
    customer_id: str | None = None,
    decode: Decode = payload_of,
) -> CustomerState:
    """The customer's state at ``moment`` (the fold of ``prefix_until(moment)``)."""
    return _walk(prefix_until(envelopes, moment), _customer_id(envelopes, customer_id), decode).final


def owner_as_of(
    envelopes: Sequence[EventEnvelope],
    moment: datetime,
    customer_id: str | None = None,
    decode: Decode = payload_of,
) -> AsOf:
    """The owner at ``moment``, since when, and the event that made them owner."""
    prefix = prefix_until(envelopes, moment)
    walk = _walk(prefix, _customer_id(envelopes, customer_id), decode)
    state = walk.final
    cause: TimelineEntry | None = None
    if state.owner is not None:
        for step in walk.steps:
            if str(step.envelope.event_id) == state.owner.cause_event_id:
                cause = _entry(step)
                break
    return AsOf(moment=moment, state=state, events_applied=len(prefix), cause_event=cause)
