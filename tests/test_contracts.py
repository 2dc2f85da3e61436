"""The contracts: exported JSON Schemas are current, events are well-formed and round-trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts.commands import COMMAND_TYPES, AddNote, RequestHandoff
from contracts.envelope import EventEnvelope
from contracts.events import EVENT_TYPES, Event, HandoffRequested, UnknownEventType, event_class
from contracts.schema_export import SCHEMA_DIR, render_all

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

# One valid payload per event type. A new event type without a sample here fails
# test_every_event_has_a_sample: add one.
SAMPLES: dict[str, dict[str, Any]] = {
    "ContactOpened": {
        "contact_id": "c-1",
        "agent_id": "alice",
        "channel": "chat",
        "subject": "Double charge",
    },
    "NoteAdded": {"contact_id": "c-1", "note_id": "n-1", "author_id": "alice", "text": "Card x"},
    "HandoffRequested": {
        "handoff_id": "h-1",
        "from_agent_id": "alice",
        "target": {"kind": "team", "team": "billing"},
        "reason": "not_my_area",
        "recap": "Charged twice on 1 March; refund wanted.",
        "customer_informed": True,
    },
    "HandoffOffered": {
        "handoff_id": "h-1",
        "agent_id": "bob",
        "attempt": 1,
        "expires_at": NOW + timedelta(minutes=2),
    },
    "HandoffAccepted": {"handoff_id": "h-1", "agent_id": "bob"},
    "HandoffDeclined": {"handoff_id": "h-1", "agent_id": "bob", "reason": "In a call"},
    "HandoffFailed": {"handoff_id": "h-1", "reason": "nobody available in billing"},
    "OwnerAssigned": {
        "agent_id": "bob",
        "previous_agent_id": "alice",
        "cause": "handoff_accepted",
        "cause_event_id": str(uuid4()),
        "handoff_id": "h-1",
    },
    "CallbackPromised": {
        "promise_id": "p-1",
        "contact_id": "c-1",
        "promised_by": "bob",
        "due_at": NOW + timedelta(hours=1),
        "what": "Confirm the refund",
    },
    "CallbackCompleted": {"promise_id": "p-1", "agent_id": "bob", "outcome": "Refunded"},
    "CallbackCancelled": {"promise_id": "p-1", "reason": "Customer withdrew the request"},
    "PromiseBroken": {"promise_id": "p-1", "due_at": NOW, "owner_id": "bob"},
    "EscalationRaised": {
        "escalation_id": "e-1",
        "level": 1,
        "to_agent_id": "carol",
        "reason": "Promise p-1 broken",
        "promise_id": "p-1",
    },
    "EscalationAcknowledged": {"escalation_id": "e-1", "agent_id": "carol"},
    "LoopClosed": {"contact_id": "c-1", "agent_id": "bob", "resolution": "Refund confirmed"},
    "AgentRegistered": {
        "agent_id": "bob",
        "name": "Bob",
        "teams": ["billing"],
        "skills": ["refunds"],
        "supervisor_id": "carol",
    },
    "AgentUpdated": {"agent_id": "bob", "name": "Bob B.", "role": "supervisor"},
    "AgentAvailabilityChanged": {"agent_id": "bob", "available": False},
}


def _sample(event_type: str) -> Event:
    return EVENT_TYPES[event_type].model_validate(SAMPLES[event_type])


def _envelope(event: Event, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": uuid4(),
        "tenant_id": "acme",
        "stream": "customer:cust-1",
        "customer_id": "cust-1",
        "stream_version": 3,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": NOW,
        "recorded_at": NOW,
        "actor": "agent:alice",
        "correlation_id": uuid4(),
        "causation_id": uuid4(),
        "trace_context": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
        "payload": event.model_dump(mode="json"),
    }
    fields.update(changes)
    return fields


# --- exported JSON Schema -------------------------------------------------------------


def test_exported_schemas_are_current() -> None:
    expected = render_all()
    on_disk = {
        path.relative_to(SCHEMA_DIR).as_posix(): path.read_text(encoding="utf-8")
        for path in SCHEMA_DIR.rglob("*.json")
    }
    missing = sorted(set(expected) - set(on_disk))
    stale = sorted(set(on_disk) - set(expected))
    changed = sorted(
        name for name in set(expected) & set(on_disk) if expected[name] != on_disk[name]
    )
    problems = [f"missing: {n}" for n in missing]
    problems += [f"no longer exported (stale): {n}" for n in stale]
    problems += [f"out of date: {n}" for n in changed]
    assert not problems, (
        "contracts/schema/ does not match the models; run `make schemas` and commit the "
        "result:\n  " + "\n  ".join(problems)
    )


def test_every_event_and_command_is_exported() -> None:
    names = set(render_all())
    assert "envelope.json" in names
    for event_type, cls in EVENT_TYPES.items():
        assert f"events/{event_type}.v{cls.schema_version}.json" in names
    for command in COMMAND_TYPES:
        assert f"commands/{command}.json" in names


# --- events ---------------------------------------------------------------------------


def test_event_types_are_unique_and_versioned() -> None:
    classes = list(EVENT_TYPES.values())
    assert len({cls.event_type for cls in classes}) == len(classes)
    assert len(set(classes)) == len(classes), "one class registered under two names"
    all_subclasses = _subclasses(Event)
    unregistered = [c.__name__ for c in all_subclasses if c not in classes]
    assert not unregistered, f"event classes missing from EVENT_TYPES: {unregistered}"
    for name, cls in EVENT_TYPES.items():
        assert cls.event_type == name
        assert isinstance(cls.schema_version, int)
        assert cls.schema_version >= 1, f"{name}: schema_version must be >= 1"
        assert event_class(name, cls.schema_version) is cls


def _subclasses(cls: type[Event]) -> list[type[Event]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_unknown_event_type_or_version_is_an_error() -> None:
    with pytest.raises(UnknownEventType):
        event_class("ContactTeleported")
    with pytest.raises(UnknownEventType):
        event_class("ContactOpened", 99)


def test_every_event_has_a_sample() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES), "add a sample payload for every event type"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_round_trips_through_json(event_type: str) -> None:
    event = _sample(event_type)
    cls = EVENT_TYPES[event_type]
    again = cls.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.model_dump_json() == event.model_dump_json()


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_round_trips_inside_the_envelope(event_type: str) -> None:
    event = _sample(event_type)
    envelope = EventEnvelope.model_validate(_envelope(event))
    again = EventEnvelope.model_validate_json(envelope.model_dump_json())
    assert again == envelope
    decoded = event_class(again.event_type, again.schema_version).model_validate(again.payload)
    assert decoded == event


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_rejects_unknown_fields(event_type: str) -> None:
    with pytest.raises(ValidationError, match="extra"):
        EVENT_TYPES[event_type].model_validate({**SAMPLES[event_type], "surprise": 1})


# --- envelope -------------------------------------------------------------------------


def test_envelope_rejects_unknown_fields() -> None:
    fields = _envelope(_sample("NoteAdded"), owner="mallory")
    with pytest.raises(ValidationError, match="owner"):
        EventEnvelope.model_validate(fields)


@pytest.mark.parametrize("tenant", ["", "acme corp", "acme.eu", "acme*", "acme>", "ä", "x" * 65])
def test_envelope_rejects_bad_tenant_ids(tenant: str) -> None:
    with pytest.raises(ValidationError, match="tenant_id"):
        EventEnvelope.model_validate(_envelope(_sample("NoteAdded"), tenant_id=tenant))


@pytest.mark.parametrize("tenant", ["acme", "ACME_eu-1", "x" * 64])
def test_envelope_accepts_good_tenant_ids(tenant: str) -> None:
    envelope = EventEnvelope.model_validate(_envelope(_sample("NoteAdded"), tenant_id=tenant))
    assert envelope.tenant_id == tenant


def test_envelope_rejects_stream_version_zero() -> None:
    with pytest.raises(ValidationError, match="stream_version"):
        EventEnvelope.model_validate(_envelope(_sample("NoteAdded"), stream_version=0))


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("recap", ["", "   ", "\n\t"])
def test_empty_recap_is_rejected(recap: str) -> None:
    with pytest.raises(ValidationError, match="recap"):
        HandoffRequested.model_validate({**SAMPLES["HandoffRequested"], "recap": recap})
    command = {k: v for k, v in SAMPLES["HandoffRequested"].items() if k != "handoff_id"}
    with pytest.raises(ValidationError, match="recap"):
        RequestHandoff.model_validate({**command, "recap": recap})


def test_recap_is_stripped() -> None:
    event = HandoffRequested.model_validate({**SAMPLES["HandoffRequested"], "recap": "  ok \n"})
    assert event.recap == "ok"


@pytest.mark.parametrize("agent_id", ["", "alice smith", "alice/1", "a" * 129])
def test_bad_entity_ids_are_rejected(agent_id: str) -> None:
    with pytest.raises(ValidationError, match="agent_id"):
        EVENT_TYPES["ContactOpened"].model_validate(
            {**SAMPLES["ContactOpened"], "agent_id": agent_id}
        )


def test_handoff_target_is_discriminated() -> None:
    bad = {**SAMPLES["HandoffRequested"], "target": {"kind": "planet", "name": "Mars"}}
    with pytest.raises(ValidationError, match="target"):
        HandoffRequested.model_validate(bad)


def test_commands_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        AddNote.model_validate({"author_id": "alice", "text": "hi", "tenant_id": "other"})
