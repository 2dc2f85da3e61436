"""The consumer wiring over FastStream: the same test in memory and on a real server.

``-m "not nats"`` runs only the in-memory variants (FastStream's TestNatsBroker, for
handler wiring); the ``nats`` variants run against a real nats-server with JetStream
and prove redelivery, backoff and parking, which the in-memory broker cannot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from faststream.nats import TestNatsBroker

from runtime.bus.consumer import Outcome, ProjectionConsumer
from runtime.bus.nats import JetStreamPublisher, attach, declare, make_broker
from runtime.config import Settings
from runtime.natsserver import NatsServer
from runtime.store.sqlite import SqliteEventStore, SqliteViewStore
from tests.bus.test_consumer import ContactLog, append_contacts, message
from tests.support import eventually, settings_env, unique_bus


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SqliteEventStore, SqliteViewStore]]:
    store = SqliteEventStore(tmp_path / "events.db")
    views = SqliteViewStore(tmp_path / "views.db")
    yield store, views
    await store.close()
    await views.close()


def settings_for(url: str) -> Settings:
    settings: Settings = settings_env(
        {
            "BATON_NATS_URL": url,
            **unique_bus(),
            "BATON_CONSUMER_MAX_ATTEMPTS": "3",
            "BATON_CONSUMER_RETRY_BASE_SECONDS": "0.1",
        }
    )
    return settings


@pytest.fixture(params=[pytest.param("memory"), pytest.param("real", marks=pytest.mark.nats)])
def bus_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_published_event_reaches_the_projection(bus_mode: str, parts, request) -> None:
    store, views = parts
    url = request.getfixturevalue("nats_server").url if bus_mode == "real" else "nats://127.0.0.1:1"
    settings = settings_for(url)
    tenant, customer = f"t{uuid4().hex[:8]}", f"c{uuid4().hex[:8]}"
    records = await append_contacts(store, tenant, customer, 2)
    broker = make_broker(settings, "test")
    consumer = ProjectionConsumer("test-log", store, views, ContactLog(), now)
    attach(broker, consumer, settings)
    publish = JetStreamPublisher(broker, settings)
    if bus_mode == "memory":
        async with TestNatsBroker(broker) as test_broker:
            for record in records:
                await test_broker.publish(
                    message(record),
                    subject=f"{settings.subject_prefix}.{tenant}.ContactOpened",
                    stream=settings.nats_stream,
                )
    else:
        await broker.connect()
        await declare(broker, settings)
        await broker.start()
        try:
            for record in records:
                await publish(record)
            await eventually(lambda: _version(views, tenant, customer, 2), message="projected")
        finally:
            await broker.stop()
    doc = await views.load("contact-log", tenant, f"customer:{customer}")
    assert doc is not None and doc.doc["contacts"] == ["c1", "c2"] and doc.doc["events_applied"] == 2


async def _version(views: SqliteViewStore, tenant: str, customer: str, version: int) -> bool:
    doc = await views.load("contact-log", tenant, f"customer:{customer}")
    return doc is not None and doc.version == version


@pytest.mark.nats
async def test_failing_message_is_redelivered_then_applied(parts, nats_server: NatsServer) -> None:
    store, views = parts
    settings = settings_for(nats_server.url)
    tenant, customer = f"t{uuid4().hex[:8]}", f"c{uuid4().hex[:8]}"
    [record] = await append_contacts(store, tenant, customer, 1)
    broker = make_broker(settings, "test")
    consumer = ProjectionConsumer(
        "flaky", store, views, ContactLog(fail_times=2), now, max_attempts=5, retry_base_seconds=0.1
    )
    attach(broker, consumer, settings)
    await broker.connect()
    await declare(broker, settings)
    await broker.start()
    try:
        await JetStreamPublisher(broker, settings)(record)
        await eventually(lambda: _version(views, tenant, customer, 1), message="applied after retries")
        assert consumer.counts[Outcome.RETRY] == 2 and consumer.redeliveries >= 2
        assert await views.parked() == []
    finally:
        await broker.stop()


@pytest.mark.nats
async def test_message_failing_every_time_is_parked_and_stops_coming_back(parts, nats_server: NatsServer) -> None:
    store, views = parts
    settings = settings_for(nats_server.url)
    tenant, customer = f"t{uuid4().hex[:8]}", f"c{uuid4().hex[:8]}"
    [record] = await append_contacts(store, tenant, customer, 1)
    broker = make_broker(settings, "test")
    projection = ContactLog(fail_times=10**6)
    consumer = ProjectionConsumer("broken", store, views, projection, now, max_attempts=3, retry_base_seconds=0.1)
    attach(broker, consumer, settings)
    await broker.connect()
    await declare(broker, settings)
    await broker.start()
    try:
        await JetStreamPublisher(broker, settings)(record)

        async def parked() -> list:
            return await views.parked("broken")

        [item] = await eventually(parked, message="parked after 3 attempts")
        assert item.attempts == 3 and item.event_id == str(record.event_id)
        calls = projection.calls
        # acknowledged once parked: JetStream has nothing left pending for this consumer
        js = broker.connection.jetstream()

        async def settled() -> bool:
            info = await js.consumer_info(settings.nats_stream, "broken")
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(settled, message="consumer settled")
        assert projection.calls == calls == 3
    finally:
        await broker.stop()
