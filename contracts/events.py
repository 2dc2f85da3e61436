"""Event payloads, schema version 1.

Events are named in the past tense. Each class declares its stable ``event_type``
name and ``schema_version``; those two, never the Python class path, identify a
stored event. Adding a field with a default is compatible; anything else is a new
schema version with an upcaster.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.ids import EntityId, NonEmptyText, ShortText


class Event(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class Channel(StrEnum):
    """How the customer reached us or is to be reached."""

    PHONE = "phone"
    EMAIL = "email"
    CHAT = "chat"
    SMS = "sms"
    IN_PERSON = "in_person"
    OTHER = "other"


class HandoffReason(StrEnum):
    """Why a hand-off is needed."""

    NOT_MY_AREA = "not_my_area"
    NEEDS_AUTHORITY = "needs_authority"
    NEEDS_EXPERTISE = "needs_expertise"
    OUTSIDE_SCOPE = "outside_scope"
    CAPACITY = "capacity"


class AgentRole(StrEnum):
    """An agent's place in the escalation ladder."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    MANAGER = "manager"


class OwnershipCause(StrEnum):
    """Why ownership was assigned."""

    FIRST_CONTACT = "first_contact"
    HANDOFF_ACCEPTED = "handoff_accepted"


# --- hand-off targets --------------------------------------------------------------


class AgentTarget(BaseModel):
    """A named colleague."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["agent"] = "agent"
    agent_id: EntityId


class TeamTarget(BaseModel):
    """A team or skill; routing picks an available member."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["team"] = "team"
    team: EntityId


class SupervisorTarget(BaseModel):
    """The requesting agent's supervisor (for example when authority is lacking)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["supervisor"] = "supervisor"


class ExternalTarget(BaseModel):
    """An outside organisation: a referral. The referring agent keeps ownership."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["external"] = "external"
    organisation: ShortText
    contact_person: ShortText | None = None
    phone: Annotated[str, Field(max_length=50)] | None = None
    url: Annotated[str, Field(max_length=500)] | None = None


HandoffTarget = Annotated[AgentTarget | TeamTarget | SupervisorTarget | ExternalTarget, Field(discriminator="kind")]


# --- customer stream ------------------------------------------------------------------


class ContactOpened(Event):
    """A customer contacted us and an agent took the contact."""

    event_type: ClassVar[str] = "ContactOpened"
    contact_id: EntityId
    agent_id: EntityId
    channel: Channel = Channel.PHONE
    subject: Annotated[str, Field(max_length=500)] | None = None


class NoteAdded(Event):
    """A note taken during a contact; notes feed the hand-off recap."""

    event_type: ClassVar[str] = "NoteAdded"
    contact_id: EntityId
    note_id: EntityId
    author_id: EntityId
    text: NonEmptyText


class HandoffRequested(Event):
    """The owner asked to hand the customer (or a question) to someone else."""

    event_type: ClassVar[str] = "HandoffRequested"
    handoff_id: EntityId
    from_agent_id: EntityId
    target: HandoffTarget
    reason: HandoffReason
    recap: NonEmptyText
    customer_informed: bool


class HandoffOffered(Event):
    """Routing offered a pending hand-off to one agent until ``expires_at``."""

    event_type: ClassVar[str] = "HandoffOffered"
    handoff_id: EntityId
    agent_id: EntityId
    attempt: int = Field(ge=1)
    expires_at: datetime


class HandoffAccepted(Event):
    """The offered agent accepted the hand-off."""

    event_type: ClassVar[str] = "HandoffAccepted"
    handoff_id: EntityId
    agent_id: EntityId


class HandoffDeclined(Event):
    """The offered agent declined (or the offer expired, with ``expired`` true)."""

    event_type: ClassVar[str] = "HandoffDeclined"
    handoff_id: EntityId
    agent_id: EntityId
    reason: ShortText
    expired: bool = False


class HandoffFailed(Event):
    """Nobody was left to offer the hand-off to; the requester stays owner."""

    event_type: ClassVar[str] = "HandoffFailed"
    handoff_id: EntityId
    reason: ShortText


class OwnerAssigned(Event):
    """The customer has a new accountable owner. The only event that changes ownership."""

    event_type: ClassVar[str] = "OwnerAssigned"
    agent_id: EntityId
    previous_agent_id: EntityId | None
    cause: OwnershipCause
    cause_event_id: str = Field(description="The event that caused the assignment.")
    handoff_id: EntityId | None = None
    promises_transferred: list[EntityId] = Field(
        default_factory=list, description="Open promises that became the new owner's to keep."
    )


class CallbackPromised(Event):
    """An agent promised to get back to the customer by ``due_at``."""

    event_type: ClassVar[str] = "CallbackPromised"
    promise_id: EntityId
    contact_id: EntityId
    promised_by: EntityId
    due_at: datetime
    channel: Channel = Channel.PHONE
    what: NonEmptyText


class CallbackCompleted(Event):
    """A promise was kept (``late`` when after its due time)."""

    event_type: ClassVar[str] = "CallbackCompleted"
    promise_id: EntityId
    agent_id: EntityId
    outcome: NonEmptyText
    late: bool = False


class CallbackCancelled(Event):
    """A promise was withdrawn, with a reason."""

    event_type: ClassVar[str] = "CallbackCancelled"
    promise_id: EntityId
    agent_id: EntityId | None = None
    reason: NonEmptyText


class PromiseBroken(Event):
    """A promise reached its due time without being kept."""

    event_type: ClassVar[str] = "PromiseBroken"
    promise_id: EntityId
    due_at: datetime
    owner_id: EntityId


class EscalationRaised(Event):
    """Someone up the ladder must act: level 1 supervisor, level 2 manager."""

    event_type: ClassVar[str] = "EscalationRaised"
    escalation_id: EntityId
    level: int = Field(ge=1)
    to_agent_id: EntityId | None
    reason: ShortText
    promise_id: EntityId | None = None
    handoff_id: EntityId | None = None


class EscalationAcknowledged(Event):
    """A supervisor or manager acknowledged an escalation."""

    event_type: ClassVar[str] = "EscalationAcknowledged"
    escalation_id: EntityId
    agent_id: EntityId


class LoopClosed(Event):
    """The owner closed the loop with the customer; the contact is done."""

    event_type: ClassVar[str] = "LoopClosed"
    contact_id: EntityId
    agent_id: EntityId
    resolution: NonEmptyText


# --- agent directory stream ----------------------------------------------------------


class AgentEntry(BaseModel):
    """The fields of a directory entry, shared by AgentRegistered and AgentUpdated."""

    agent_id: EntityId
    name: ShortText
    role: AgentRole = AgentRole.AGENT
    teams: list[EntityId] = Field(default_factory=list)
    skills: list[EntityId] = Field(default_factory=list)
    supervisor_id: EntityId | None = None
    available: bool = True


class AgentRegistered(Event, AgentEntry):
    """An agent joined the directory."""

    event_type: ClassVar[str] = "AgentRegistered"


class AgentUpdated(Event, AgentEntry):
    """An agent's directory entry changed (the full new entry)."""

    event_type: ClassVar[str] = "AgentUpdated"


class AgentAvailabilityChanged(Event):
    """An agent became available or unavailable."""

    event_type: ClassVar[str] = "AgentAvailabilityChanged"
    agent_id: EntityId
    available: bool


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        ContactOpened,
        NoteAdded,
        HandoffRequested,
        HandoffOffered,
        HandoffAccepted,
        HandoffDeclined,
        HandoffFailed,
        OwnerAssigned,
        CallbackPromised,
        CallbackCompleted,
        CallbackCancelled,
        PromiseBroken,
        EscalationRaised,
        EscalationAcknowledged,
        LoopClosed,
        AgentRegistered,
        AgentUpdated,
        AgentAvailabilityChanged,
    )
}
"""Every event class by its stable type name."""


class UnknownEventType(LookupError):
    """A stored or received event names a type (or version) this code does not know."""


def event_class(event_type: str, schema_version: int = 1) -> type[Event]:
    """Return the payload class for a type name and schema version."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None or cls.schema_version != schema_version:
        raise UnknownEventType(f"{event_type} v{schema_version}")
    return cls
