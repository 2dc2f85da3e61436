"""An operator replays parked messages once the cause is fixed; nothing is lost."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from runtime.compose import build_runtime
from runtime.natsserver import NatsServer
from runtime.store.sqlite import SqliteEventStore, SqliteViewStore
from tests.bus.test_consumer import ContactLog, append_contacts
from tests.bus.test_nats_consumer import settings_for
from tests.support import eventually


@pytest.mark.nats
async def test_parked_message_is_replayed_after_the_fix(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = settings_for(nats_server.url)  # 3 attempts, 0.1 s backoff
    store = SqliteEventStore(tmp_path / "events.db")
    views = SqliteViewStore(tmp_path / "views.db")
    runtime = build_runtime("svc", settings, store=store, views=views)
    projection = ContactLog(fail_times=10**6)
    consumer = runtime.add_consumer(projection)
    await runtime.start()
    try:
        tenant, customer = f"t{uuid4().hex[:8]}", f"c{uuid4().hex[:8]}"
        [record] = await append_contacts(store, tenant, customer, 1)
        await runtime.relay.publish_now([record])

        async def parked() -> list:
            return await views.parked(consumer.name)

        [item] = await eventually(parked, message="parked after its attempts")
        assert item.event_id == str(record.event_id)
        still_broken = await runtime.replay_parked(consumer.name)
        assert [r["outcome"] for r in still_broken] == ["failed"]
        assert len(await views.parked(consumer.name)) == 1  # stays parked, with the new error

        projection.fail_times = 0  # the fix is deployed
        results = await runtime.replay_parked(consumer.name, str(record.event_id))
        assert [r["outcome"] for r in results] == ["replayed"]
        assert await views.parked(consumer.name) == []
        doc = await views.load(ContactLog.view, tenant, f"customer:{customer}")
        assert doc is not None and doc.doc["contacts"] == ["c1"] and doc.doc["events_applied"] == 1
        assert await runtime.replay_parked(consumer.name) == []
    finally:
        await runtime.stop()
