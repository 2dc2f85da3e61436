"""Rebuilding views from the store gives what the live consumers built (no processes here;
the end-to-end version is in test_acceptance.py)."""

from __future__ import annotations

import random
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.envelope import EventEnvelope
from contracts.events import Event
from runtime.bus.consumer import ProjectionConsumer
from runtime.cli.main import app, service_projections
from runtime.domain.projections import DirectoryProjection, OwnershipProjection
from runtime.events import to_envelope
from runtime.rebuild import RebuildError, apply_envelopes, apply_event, rebuild_view
from runtime.store.port import ViewStore
from runtime.store.sqlite import SqliteEventStore, SqliteViewStore
from services.followup.domain import FollowupProjection
from tests.audit.scenario import at, register_agents, write_scenario

PROJECTIONS = [OwnershipProjection(), DirectoryProjection(), FollowupProjection()]


def dump(path: Path, view: str) -> dict[tuple[str, str], tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT tenant_id, key, version, doc FROM views WHERE view = ?", (view,)).fetchall()
    return {(t, k): (v, d) for t, k, v, d in rows}


@pytest.fixture
async def store(tmp_path: Path):
    store = await SqliteEventStore.open(tmp_path / "baton.db")
    for tenant in ("acme", "globex"):
        await register_agents(store, tenant)
        for n in range(3):
            await write_scenario(store, tenant, f"cust-{n}")
    yield store
    await store.close()


async def consume_like_the_bus(store: SqliteEventStore, views: ViewStore, projection: Any) -> None:
    """Deliver every event to a live consumer, shuffled and duplicated (the bus may)."""
    consumer = ProjectionConsumer("test", store, views, projection, clock=lambda: at(0))
    records, after = [], 0
    while batch := await store.read_all(after_position=after):
        records += batch
        after = batch[-1].position
    deliveries = records + random.Random(7).sample(records, len(records) // 2)
    random.Random(42).shuffle(deliveries)
    for record in deliveries:
        await consumer.apply_through(to_envelope(record))


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.view)
async def test_a_rebuilt_view_equals_the_live_one(store: SqliteEventStore, tmp_path: Path, projection: Any) -> None:
    live = await SqliteViewStore.open(tmp_path / "live.db")
    rebuilt = await SqliteViewStore.open(tmp_path / "rebuilt.db")
    try:
        await consume_like_the_bus(store, live, projection)
        await rebuilt.save(projection.view, "acme", "stale", {"x": 1}, 1, 0)  # dropped by the rebuild
        stats = await rebuild_view(store, rebuilt, projection, page=7)
    finally:
        await live.close()
        await rebuilt.close()
    expected = dump(tmp_path / "live.db", projection.view)
    assert expected, "the live consumer built nothing?"
    assert dump(tmp_path / "rebuilt.db", projection.view) == expected
    assert stats.documents == len(expected)
    assert stats.events_read == 2 * (4 + 3 * 17)
    assert stats.events_applied == sum(v for v, _ in expected.values())


async def test_rebuild_never_runs_reactors_and_resumes_after_a_concurrent_save(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    views = await SqliteViewStore.open(tmp_path / "views.db")
    projection = OwnershipProjection()
    try:
        # A "consumer" that saved the first page of a stream while the rebuild ran.
        head = [to_envelope(r) for r in await store.read_stream("acme", "customer:cust-0", until_version=5)]
        calls: list[str] = []

        async def reactor(envelope: EventEnvelope, event: Event) -> None:
            calls.append(envelope.event_type)

        doc = await apply_envelopes(projection, {}, head, reactor)
        assert len(calls) == 5
        original_drop = views.drop

        async def drop_then_race(view: str) -> None:
            await original_drop(view)
            await views.save(view, "acme", "customer:cust-0", doc, 5, 0)

        views.drop = drop_then_race  # type: ignore[method-assign]
        await rebuild_view(store, views, projection)
        found = await views.load(projection.view, "acme", "customer:cust-0")
        assert found is not None and found.version == 17 and found.doc["events_applied"] == 17
    finally:
        await views.close()


def test_apply_event_does_the_bookkeeping() -> None:
    class Count:
        view = "count"

        def wants(self, envelope: EventEnvelope) -> bool:
            return True

        def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
            return {**doc, "n": doc.get("n", 0) + 1}

    from tests.audit.scenario import envelopes_of

    envelopes = envelopes_of()
    doc: dict[str, Any] = {}
    for envelope in envelopes[:3]:
        from runtime.events import payload_of

        doc = apply_event(Count(), doc, envelope, payload_of(envelope))
    assert doc == {"n": 3, "events_applied": 3, "last_event_id": str(envelopes[2].event_id)}


async def test_a_view_ahead_of_the_store_is_left_alone_and_a_gap_is_reported(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    views = await SqliteViewStore.open(tmp_path / "views.db")
    projection = OwnershipProjection()
    try:
        original_drop = views.drop

        async def drop_then_jump(view: str) -> None:
            await original_drop(view)
            await views.save(view, "acme", "customer:cust-1", {"ahead": True}, 30, 0)

        views.drop = drop_then_jump  # type: ignore[method-assign]
        stats = await rebuild_view(store, views, projection)
        assert stats.documents == 5  # 6 customer streams; the one "ahead" is skipped, as a consumer would
        ahead = await views.load(projection.view, "acme", "customer:cust-1")
        assert ahead is not None and ahead.doc == {"ahead": True}

        await views.save(projection.view, "acme", "customer:new", {}, 1, 0)
        envelopes = [to_envelope(r) for r in await store.read_stream("acme", "customer:cust-2")][5:]
        from runtime.rebuild import _apply_stream

        with pytest.raises(RebuildError, match="view is at version 1 but the store's next event is version 6"):
            await _apply_stream(views, projection, "acme", "customer:new", envelopes)
    finally:
        await views.close()


def test_the_cli_knows_every_services_projections() -> None:
    found = {s: [p.view for p in ps] for s, ps in service_projections().items()}
    assert found == {
        "intake": ["ownership"],
        "routing": ["ownership", "directory"],
        "followup": ["followup", "directory"],
    }


async def _fill(path: Path) -> None:
    store = await SqliteEventStore.open(path)
    await register_agents(store, "acme")
    await write_scenario(store, "acme", "cust-1")
    await store.close()


def test_baton_rebuild_rebuilds_every_view_and_refuses_while_a_service_runs(tmp_path: Path) -> None:
    import asyncio

    db = tmp_path / "baton.db"
    asyncio.run(_fill(db))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    busy = listener.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    env = {
        "BATON_STORE_URL": f"sqlite:///{db}",
        "BATON_HOST": "127.0.0.1",
        "BATON_INTAKE_PORT": str(busy),
        "BATON_ROUTING_PORT": str(free),
        "BATON_FOLLOWUP_PORT": str(free),
    }
    runner = CliRunner()
    try:
        refused = runner.invoke(app, ["rebuild", "--yes"], env=env)
        assert refused.exit_code == 2 and "still running: intake" in refused.stderr
        only_routing = runner.invoke(app, ["rebuild", "--yes", "--service", "routing", "--format", "json"], env=env)
        assert only_routing.exit_code == 0, only_routing.output
        assert [r["view"] for r in __import__("json").loads(only_routing.stdout)] == ["ownership", "directory"]
        unknown = runner.invoke(app, ["rebuild", "--yes", "--service", "billing"], env=env)
        assert unknown.exit_code == 2
    finally:
        listener.close()
    result = runner.invoke(app, ["rebuild", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "Rebuilt views" in result.stdout and "followup" in result.stdout
    assert dump(tmp_path / "baton-intake-views.db", "ownership")[("acme", "customer:cust-1")][0] == 17
    aborted = runner.invoke(app, ["rebuild"], env=env, input="n\n")
    assert aborted.exit_code == 2  # confirmation refused: nothing dropped
    assert dump(tmp_path / "baton-followup-views.db", "followup")[("acme", "customer:cust-1")][0] == 17


@pytest.mark.parametrize("service", ["intake", "routing", "followup"])
def test_the_cli_rebuilds_exactly_the_views_each_bootstrap_consumes(service: str, tmp_path: Path) -> None:
    """The CLI's list of projections stays in step with what the services really run."""
    import importlib

    from runtime.config import Settings

    bootstrap = importlib.import_module(f"services.{service}.bootstrap").bootstrap
    application = bootstrap(Settings(store_url=f"sqlite:///{tmp_path / 'baton.db'}", data_dir=tmp_path))
    consumers = [c.name for c in application.state.runtime.consumers]
    assert consumers == [f"{service}-{p.view}" for p in service_projections()[service]]
