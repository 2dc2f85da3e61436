"""Schema evolution: a committed stream of version-1 events replays under a version 2 of
ContactOpened (defined here, as docs/schema-evolution.md shows) through an upcaster."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
from pydantic import Field

from contracts.envelope import EventEnvelope
from contracts.events import EVENT_TYPES, ContactOpened, Event, UnknownEventType
from runtime.audit.history import promise_fates, replay
from runtime.audit.verify import verify_stream
from runtime.domain.customer import CustomerState, evolve
from runtime.events import EventContext, customer_stream, encode_event, payload_of, to_envelope
from runtime.store.port import NewEvent
from runtime.store.sqlite import SqliteEventStore
from runtime.upcasting import UPCASTERS, Upcasters, typed_payload

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v1_customer_stream.jsonl"
TENANT, CUSTOMER = "acme", "c-1042"


def define_v2() -> type[ContactOpened]:
    """Version 2 of ContactOpened: the language the customer speaks (BCP 47) is required.

    Defined per test and garbage-collected after it, so the test suite's check that every
    Event subclass is registered in contracts never sees it."""

    class ContactOpenedV2(ContactOpened):
        schema_version: ClassVar[int] = 2
        language: str = Field(min_length=2, max_length=35)

    return ContactOpenedV2


def contact_opened_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version-1 contacts did not record a language: 'und' (BCP 47: undetermined)."""
    return {**payload, "language": "und"}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def fixture_events() -> list[NewEvent]:
    """The fixture as a version-1 writer stored it."""
    events = []
    for raw in FIXTURE.read_text(encoding="utf-8").splitlines():
        line = json.loads(raw)
        metadata = {
            "occurred_at": line["occurred_at"],
            "actor": line["actor"],
            "correlation_id": "7d0c7a3e-6a51-4e4c-9a55-5b1f0b0d9c01",
            "causation_id": None,
            "trace_context": {},
            "customer_id": CUSTOMER,
        }
        assert line["schema_version"] == 1
        events.append(NewEvent(UUID(line["event_id"]), line["event_type"], 1, _json(line["payload"]), _json(metadata)))
    return events


@pytest.fixture
async def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    store = await SqliteEventStore.open(tmp_path / "baton.db")
    await store.append(TENANT, customer_stream(CUSTOMER), 0, fixture_events())
    yield store  # type: ignore[misc]
    await store.close()


_current: list[type[ContactOpened]] = []


@pytest.fixture
def v2() -> Iterator[None]:
    """ContactOpened is at version 2 (what editing contracts/events.py does), with its
    upcaster registered (what registering it in runtime/upcasting.py does). Tests get
    the class from ``current_v2()``; it is garbage-collected after the test."""
    _current.append(define_v2())
    with pytest.MonkeyPatch.context() as mp, UPCASTERS.registered("ContactOpened", 1, contact_opened_v1_to_v2):
        mp.setitem(EVENT_TYPES, "ContactOpened", _current[0])
        yield
    _current.clear()
    gc.collect()
    assert ContactOpened.__subclasses__() == [], "the v2 class outlived its test"


def current_v2() -> type[ContactOpened]:
    return _current[0]


def upcasting(envelope: EventEnvelope) -> Event:
    """``payload_of`` with the upcasters (what it becomes once wired)."""
    return typed_payload(envelope.event_type, envelope.schema_version, envelope.payload)


def fold(envelopes: list[EventEnvelope]) -> CustomerState:
    state = CustomerState(CUSTOMER)
    for envelope in envelopes:
        state = evolve(state, envelope, upcasting(envelope))
    return state


async def envelopes(store: SqliteEventStore) -> list[EventEnvelope]:
    return [to_envelope(r) for r in await store.read_stream(TENANT, customer_stream(CUSTOMER))]


async def test_the_v1_fixture_replays_today(store: SqliteEventStore) -> None:
    state = fold(await envelopes(store))
    assert state.owner is not None and state.owner.agent_id == "cleo"
    assert state.version == 17


async def test_the_v1_fixture_replays_to_the_expected_state_under_v2(store: SqliteEventStore, v2: None) -> None:
    stream = await envelopes(store)
    assert [e.schema_version for e in stream] == [1] * 17  # nothing stored was rewritten
    opened = upcasting(stream[0])
    assert isinstance(opened, current_v2())
    assert (opened.schema_version, opened.language, opened.channel.value) == (2, "und", "phone")  # type: ignore[attr-defined]

    state = fold(stream)
    assert state.version == 17
    assert state.owner is not None
    assert (state.owner.agent_id, state.owner.cause, state.owner.handoff_id) == ("cleo", "handoff_accepted", "ho2")
    assert state.owner.cause_event_id == "00000000-0000-4000-8000-000000000014"
    contact = state.contacts["k1"]
    assert (contact.agent_id, contact.channel, contact.subject, contact.closed) == (
        "ana",
        "phone",
        "Double charge",
        False,
    )
    assert [n.text for n in state.notes] == ["Charged twice on 3 Nov", "Escalation seen"]
    assert {h: state.handoffs[h].accepted_by for h in ("ho1", "ho2")} == {"ho1": "ben", "ho2": "cleo"}
    assert {p: state.promises[p].status for p in ("p1", "p2")} == {"p1": "kept", "p2": "broken"}
    assert state.escalations["e1"].to_agent_id == "sam"
    history = replay(stream, CUSTOMER, decode=upcasting)
    assert [p.owner for p in history.periods] == ["ana", "ben", "cleo"]
    assert {p.promise_id: p.fate for p in promise_fates(stream, decode=upcasting)} == {
        "p1": "kept",
        "p2": "broken_and_escalated",
    }


async def test_without_the_upcaster_v1_events_cannot_be_read_as_v2(store: SqliteEventStore) -> None:
    stream = await envelopes(store)
    cls = define_v2()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(EVENT_TYPES, "ContactOpened", cls)
        with pytest.raises(UnknownEventType, match="ContactOpened v1"):
            upcasting(stream[0])
    del cls
    gc.collect()
    assert ContactOpened.__subclasses__() == []


async def test_v1_and_v2_events_live_in_one_stream_and_the_chain_still_verifies(
    store: SqliteEventStore, v2: None
) -> None:
    stream = customer_stream(CUSTOMER)
    new = current_v2()(contact_id="k2", agent_id="cleo", language="pt-BR")  # type: ignore[call-arg]
    ctx = EventContext(
        actor="agent:cleo", occurred_at=(await envelopes(store))[-1].occurred_at, correlation_id=UUID(int=1)
    )
    await store.append(TENANT, stream, 17, [encode_event(new, stream, ctx)])
    records = await store.read_stream(TENANT, stream)
    assert [r.schema_version for r in records][-2:] == [1, 2]
    assert verify_stream(records).ok  # upcasting happens at read time: stored bytes never change
    state = fold([to_envelope(r) for r in records])
    assert set(state.contacts) == {"k1", "k2"}
    assert upcasting(to_envelope(records[-1])) == new


def test_upcasters_chain_one_version_at_a_time() -> None:
    registry = Upcasters()
    registry.add("E", 1, lambda p: {**p, "b": p["a"] * 2})
    registry.add("E", 2, lambda p: {"c": p["b"] + 1})
    assert registry.upcast("E", 1, {"a": 1}) == (3, {"c": 3})
    assert registry.upcast("E", 2, {"b": 5}) == (3, {"c": 6})
    assert registry.upcast("E", 3, {"c": 0}) == (3, {"c": 0})
    assert registry.upcast("Other", 1, {"x": 1}) == (1, {"x": 1})
    original = {"a": 1}
    registry.upcast("E", 1, original)
    assert original == {"a": 1}  # upcasters never see (or change) the caller's dict
    with pytest.raises(ValueError):
        registry.add("E", 1, lambda p: p)
    with pytest.raises(ValueError):
        registry.add("E", 0, lambda p: p)


async def test_payload_of_applies_the_registered_upcasters(store: SqliteEventStore, v2: None) -> None:
    first = (await envelopes(store))[0]
    try:
        event = payload_of(first)
    except UnknownEventType:
        pytest.skip("runtime.events.payload_of does not use runtime.upcasting yet (see docs/schema-evolution.md)")
    assert isinstance(event, current_v2()) and event.language == "und"  # type: ignore[attr-defined]
