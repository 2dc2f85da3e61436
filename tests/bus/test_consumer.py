"""ProjectionConsumer: exactly once, in stream order, retry with backoff, park."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from contracts.envelope import EventEnvelope
from contracts.events import ContactOpened, Event
from runtime.bus.consumer import Outcome, ProjectionConsumer
from runtime.events import EventContext, customer_stream, encode_event, to_envelope
from runtime.store.port import RecordedEvent
from runtime.store.sqlite import SqliteEventStore, SqliteViewStore


def now() -> datetime:
    return datetime.now(UTC)


class ContactLog:
    """Records the contact ids in the order applied; optionally fails."""

    view = "contact-log"

    def __init__(self, fail_times: int = 0) -> None:
        self.fail_times = fail_times
        self.calls = 0

    def wants(self, envelope: EventEnvelope) -> bool:
        return envelope.customer_id is not None

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise RuntimeError(f"planned failure {self.calls}")
        assert isinstance(event, ContactOpened)
        return {**doc, "contacts": [*doc.get("contacts", []), event.contact_id]}


@pytest.fixture
async def stores(tmp_path: Path):
    store = SqliteEventStore(tmp_path / "events.db")
    views = SqliteViewStore(tmp_path / "views.db")
    yield store, views
    await store.close()
    await views.close()


async def append_contacts(store: SqliteEventStore, tenant: str, customer: str, n: int) -> list[RecordedEvent]:
    stream = customer_stream(customer)
    context = EventContext(actor="agent:a", occurred_at=now(), correlation_id=uuid4())
    events = [encode_event(ContactOpened(contact_id=f"c{i}", agent_id="a"), stream, context) for i in range(1, n + 1)]
    await store.append(tenant, stream, 0, events)
    return await store.read_stream(tenant, stream)


def message(record: RecordedEvent) -> bytes:
    return to_envelope(record).model_dump_json().encode()


async def test_applies_in_order_and_skips_duplicates(stores) -> None:
    store, views = stores
    tenant, customer = f"t{uuid4().hex[:8]}", f"c{uuid4().hex[:8]}"
    records = await append_contacts(store, tenant, customer, 3)
    consumer = ProjectionConsumer("test", store, views, ContactLog(), now)
    outcomes = [(await consumer.on_message(message(r), "s", 1)).outcome for r in records]
    assert outcomes == [Outcome.APPLIED] * 3
    again = await consumer.on_message(message(records[1]), "s", 2)
    assert again.outcome is Outcome.SKIPPED
    doc = await views.load("contact-log", tenant, customer_stream(customer))
    assert doc is not None and doc.version == 3
    assert doc.doc["contacts"] == ["c1", "c2", "c3"]
    assert doc.doc["events_applied"] == 3


async def test_out_of_order_message_catches_up_from_the_store(stores) -> None:
    store, views = stores
    tenant, customer = f"t{uuid4().hex[:8]}", f"c{uuid4().hex[:8]}"
    records = await append_contacts(store, tenant, customer, 4)
    consumer = ProjectionConsumer("test", store, views, ContactLog(), now)
    assert (await consumer.on_message(message(records[3]), "s", 1)).outcome is Outcome.APPLIED
    for record in records[:3]:
        assert (await consumer.on_message(message(record), "s", 1)).outcome is Outcome.SKIPPED
    doc = await views.load("contact-log", tenant, customer_stream(customer))
    assert doc is not None and doc.doc["contacts"] == ["c1", "c2", "c3", "c4"]
    assert doc.doc["events_applied"] == 4


async def test_failure_retries_with_growing_backoff_then_parks(stores) -> None:
    store, views = stores
    tenant, customer = f"t{uuid4().hex[:8]}", f"c{uuid4().hex[:8]}"
    [record] = await append_contacts(store, tenant, customer, 1)
    consumer = ProjectionConsumer(
        "test", store, views, ContactLog(fail_times=99), now, max_attempts=3, retry_base_seconds=0.5
    )
    first = await consumer.on_message(message(record), "subj", 1)
    second = await consumer.on_message(message(record), "subj", 2)
    assert (first.outcome, first.delay) == (Outcome.RETRY, 0.5)
    assert (second.outcome, second.delay) == (Outcome.RETRY, 1.0)
    third = await consumer.on_message(message(record), "subj", 3)
    assert third.outcome is Outcome.PARKED
    [parked] = await views.parked("test")
    assert parked.event_id == str(record.event_id) and parked.attempts == 3
    assert "planned failure" in parked.error and parked.subject == "subj"
    assert await views.load("contact-log", tenant, customer_stream(customer)) is None


async def test_undecodable_message_is_parked_not_dropped(stores) -> None:
    store, views = stores
    consumer = ProjectionConsumer("test", store, views, ContactLog(), now)
    handled = await consumer.on_message(b"{not an envelope", "bad.subject", 1)
    assert handled.outcome is Outcome.PARKED
    [parked] = await views.parked("test")
    assert parked.subject == "bad.subject" and "undecodable" in parked.error
