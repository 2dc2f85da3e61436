"""Commands: what a CRM or an agent asks Baton to do. Named in the imperative.

The customer id and tenant come from the URL and headers, so they are not fields here.
"""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import AgentRole, Channel, HandoffReason, HandoffTarget
from contracts.ids import EntityId, NonEmptyText, ShortText


class Command(BaseModel):
    """Base of every command body: unknown fields are an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class OpenContact(Command):
    """Record that an agent took a contact from this customer."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "contact_id": "c-1001",
                    "agent_id": "alice",
                    "channel": "phone",
                    "subject": "Invoice shows a double charge",
                }
            ]
        },
    )

    contact_id: EntityId | None = Field(default=None, description="Your id for the contact; generated when omitted.")
    agent_id: EntityId
    channel: Channel = Channel.PHONE
    subject: Annotated[str, Field(max_length=500)] | None = None


class AddNote(Command):
    """Take a note during a contact."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"author_id": "alice", "text": "Customer sent the bank statement; charge of 49.90 appears twice."}
            ]
        },
    )

    author_id: EntityId
    text: NonEmptyText


class RequestHandoff(Command):
    """Ask to hand the customer to a colleague, team, supervisor or outside organisation."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "from_agent_id": "alice",
                    "target": {"kind": "team", "team": "billing"},
                    "reason": "needs_expertise",
                    "recap": "Double charge on the November invoice; bank statement received; expects a refund.",
                    "customer_informed": True,
                }
            ]
        },
    )

    from_agent_id: EntityId
    target: HandoffTarget
    reason: HandoffReason
    recap: NonEmptyText
    customer_informed: bool


class AcceptHandoff(Command):
    """Accept a hand-off offered to you."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"examples": [{"agent_id": "carol"}]})

    agent_id: EntityId


class DeclineHandoff(Command):
    """Decline a hand-off offered to you, saying why."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"agent_id": "bob", "reason": "Not my product line"}]},
    )

    agent_id: EntityId
    reason: ShortText


class CloseLoop(Command):
    """Close the loop with the customer: the contact is done."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"agent_id": "carol", "resolution": "Refund issued; customer confirmed by phone."}]
        },
    )

    agent_id: EntityId
    resolution: NonEmptyText


class PromiseCallback(Command):
    """Promise to get back to the customer by a due time (``due_at`` or ``within``)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "contact_id": "c-1001",
                    "promised_by": "carol",
                    "within": "PT1H",
                    "channel": "phone",
                    "what": "Call back once the refund is booked",
                }
            ]
        },
    )

    contact_id: EntityId
    promised_by: EntityId
    due_at: datetime | None = None
    within: str | None = Field(default=None, description="ISO 8601 duration, e.g. PT1H.")
    channel: Channel = Channel.PHONE
    what: NonEmptyText


class CompleteCallback(Command):
    """Record that a promise was kept."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"agent_id": "carol", "outcome": "Called back; refund confirmed"}]},
    )

    agent_id: EntityId
    outcome: NonEmptyText


class CancelCallback(Command):
    """Withdraw a promise, with a reason."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"agent_id": "carol", "reason": "Customer asked us not to call"}]},
    )

    agent_id: EntityId | None = None
    reason: NonEmptyText


class AcknowledgeEscalation(Command):
    """A supervisor or manager takes note of an escalation."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"examples": [{"agent_id": "sam"}]})

    agent_id: EntityId


class RegisterAgent(Command):
    """Register or update an agent in the directory."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Carol Diaz",
                    "role": "agent",
                    "teams": ["billing"],
                    "skills": ["refunds"],
                    "supervisor_id": "sam",
                    "available": True,
                }
            ]
        },
    )

    name: ShortText
    role: AgentRole = AgentRole.AGENT
    teams: list[EntityId] = Field(default_factory=list)
    skills: list[EntityId] = Field(default_factory=list)
    supervisor_id: EntityId | None = None
    available: bool = True


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (
        OpenContact,
        AddNote,
        RequestHandoff,
        AcceptHandoff,
        DeclineHandoff,
        CloseLoop,
        PromiseCallback,
        CompleteCallback,
        CancelCallback,
        AcknowledgeEscalation,
        RegisterAgent,
    )
}
"""Every command by name."""
