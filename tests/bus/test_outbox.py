"""OutboxRelay over a real store: what was appended but not published gets published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from runtime.bus.outbox import OutboxRelay
from runtime.store.port import RecordedEvent
from runtime.store.sqlite import SqliteEventStore
from tests.bus.test_consumer import append_contacts


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_relay_publishes_leftovers_after_the_grace_period_once(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "e.db")
    clock = Clock()
    seen: list[RecordedEvent] = []

    async def publish(record: RecordedEvent) -> None:
        seen.append(record)

    relay = OutboxRelay(store, publish, clock, grace_seconds=5, batch_size=2)
    try:
        records = await append_contacts(store, "t", f"c{uuid4().hex[:6]}", 5)
        assert await relay.drain_once() == 0  # too young: the writer may still publish them
        clock.now += timedelta(seconds=6)
        assert await relay.drain_once() == 5  # several batches of 2
        assert [r.event_id for r in seen] == [r.event_id for r in records]
        assert await store.unpublished() == []
        assert await relay.drain_once() == 0
    finally:
        await store.close()


async def test_publish_failure_leaves_events_for_the_relay(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "e.db")
    clock = Clock()
    attempts: list[RecordedEvent] = []

    async def broken(record: RecordedEvent) -> None:
        attempts.append(record)
        raise ConnectionError("NATS is down")

    try:
        records = await append_contacts(store, "t", f"c{uuid4().hex[:6]}", 2)
        await OutboxRelay(store, broken, clock).publish_now(records)  # logged, not raised
        assert attempts == records[:1]
        assert [r.event_id for r in await store.unpublished()] == [r.event_id for r in records]
    finally:
        await store.close()
