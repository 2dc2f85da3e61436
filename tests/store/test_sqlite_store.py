"""The store contract on SQLite, plus what only the SQLite adapter promises."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from runtime.store.port import Deadline, EventStore, ViewStore
from runtime.store.sqlite import SqliteDeadlineStore, SqliteEventStore, SqliteViewStore
from tests.store.contract import (
    EventStoreContract,
    ViewStoreContract,
    new_event,
    new_events,
    new_stream,
    new_tenant,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class TestSqliteEventStore(EventStoreContract):
    async def make_event_store(self) -> EventStore:
        return SqliteEventStore(self.tmp_path / "baton.db")


class TestSqliteViewStore(ViewStoreContract):
    async def make_view_store(self) -> ViewStore:
        return SqliteViewStore(self.tmp_path / "baton.db")


async def test_construction_is_lazy_and_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "baton.db"
    store = SqliteEventStore(str(path))
    try:
        assert not path.parent.exists()
        await store.ping()
        assert path.exists()
    finally:
        await store.close()


async def test_open_connects_at_once_and_close_is_idempotent(tmp_path: Path) -> None:
    store = await SqliteViewStore.open(tmp_path / "x" / "views.db")
    assert (tmp_path / "x" / "views.db").exists()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.ping()


async def test_open_fails_early_on_an_unusable_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        await SqliteEventStore.open(tmp_path / "file" / "baton.db")


async def test_connection_is_durable_and_waits_for_other_writers(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "baton.db")
    try:
        pragmas = await store._run(
            lambda conn: tuple(
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout")
            )
        )
        assert pragmas == ("wal", 2, 30_000)  # synchronous 2 == FULL
    finally:
        await store.close()


async def test_indexes_serve_the_hot_queries(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "baton.db")
    try:

        async def plan(sql: str) -> str:
            rows = await store._run(
                lambda conn: conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            )
            return " ".join(str(r[-1]) for r in rows)

        unpublished = await plan(
            "SELECT * FROM events WHERE published = 0 ORDER BY position LIMIT 10"
        )
        assert "events_unpublished" in unpublished
        assert "TEMP B-TREE" not in unpublished
        by_stream = await plan(
            "SELECT * FROM events WHERE tenant_id = 't' AND stream = 's' AND version > 0 "
            "ORDER BY version"
        )
        assert "USING INDEX" in by_stream
        assert "TEMP B-TREE" not in by_stream
        head = await plan(
            "SELECT version, hash FROM events WHERE tenant_id = 't' AND stream = 's' "
            "ORDER BY version DESC LIMIT 1"
        )
        assert "USING INDEX" in head
        assert "TEMP B-TREE" not in head
    finally:
        await store.close()


_SCHEMA_V1_EVENTS = """
    CREATE TABLE events (
        position       INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id      TEXT    NOT NULL,
        stream         TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        event_id       TEXT    NOT NULL UNIQUE,
        event_type     TEXT    NOT NULL,
        schema_version INTEGER NOT NULL,
        data           BLOB    NOT NULL,
        metadata       BLOB    NOT NULL,
        recorded_at    TEXT    NOT NULL,
        published      INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tenant_id, stream, version)
    )
"""


async def test_a_file_from_before_the_hash_chain_is_migrated_and_chained(tmp_path: Path) -> None:
    import sqlite3

    from runtime.audit.chain import GENESIS_HASH, event_hash

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(_SCHEMA_V1_EVENTS)
    conn.execute("PRAGMA user_version = 1")
    legacy = [("t1", "s", 1), ("t2", "s", 1), ("t1", "s", 2), ("t1", "s", 3)]
    events = new_events(len(legacy))
    for (tenant, stream, version), event in zip(legacy, events, strict=True):
        conn.execute(
            "INSERT INTO events (tenant_id, stream, version, event_id, event_type, schema_version, data, "
            "metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (tenant, stream, version, str(event.event_id), event.event_type, 1, event.data, event.metadata,
             "2030-01-01T00:00:00.000000+00:00"),
        )
    conn.commit()
    conn.close()

    store = await SqliteEventStore.open(path)
    try:
        for tenant in ("t1", "t2"):
            previous = GENESIS_HASH
            for rec in await store.read_stream(tenant, "s"):
                assert rec.previous_hash == previous
                assert rec.hash == event_hash(
                    previous_hash=previous, tenant_id=rec.tenant_id, stream=rec.stream, version=rec.version,
                    event_id=rec.event_id, event_type=rec.event_type, schema_version=rec.schema_version,
                    data=rec.data, metadata=rec.metadata,
                )
                previous = rec.hash
        # New appends chain on from the migrated head.
        await store.append("t1", "s", 3, [new_event()])
        recs = await store.read_stream("t1", "s")
        assert recs[-1].previous_hash == recs[-2].hash
        version = await store._run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == 2
    finally:
        await store.close()
    # Opening again changes nothing.
    again = await SqliteEventStore.open(path)
    try:
        assert [r.hash for r in await again.read_stream("t1", "s")] == [r.hash for r in recs]
    finally:
        await again.close()


async def test_clock_stamps_recorded_at_in_utc(tmp_path: Path) -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    store = SqliteEventStore(tmp_path / "baton.db", clock=lambda: moment)
    try:
        tenant, stream = new_tenant(), new_stream()
        await store.append(tenant, stream, 0, new_events(2))
        for rec in await store.read_stream(tenant, stream):
            assert rec.recorded_at == moment
            assert rec.recorded_at.utcoffset() == timedelta(0)
    finally:
        await store.close()


async def test_a_naive_clock_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "baton.db", clock=lambda: datetime(2030, 1, 1))
    try:
        tenant, stream = new_tenant(), new_stream()
        with pytest.raises(ValueError):
            await store.append(tenant, stream, 0, [new_event()])
        assert await store.stream_version(tenant, stream) == 0
    finally:
        await store.close()


async def test_event_and_view_stores_share_one_file(tmp_path: Path) -> None:
    events = await SqliteEventStore.open(tmp_path / "baton.db")
    views = await SqliteViewStore.open(tmp_path / "baton.db")
    try:
        tenant = new_tenant()
        await events.append(tenant, "s", 0, new_events(1))
        await views.save("v", tenant, "k", {"n": 1}, 1, 0)
        assert await events.stream_version(tenant, "s") == 1
        assert await views.count("v") == 1
    finally:
        await events.close()
        await views.close()


async def test_the_event_loop_keeps_running_while_a_writer_waits(tmp_path: Path) -> None:
    """A store blocked on another connection's lock must not block the loop."""
    path = tmp_path / "baton.db"
    holder = await SqliteEventStore.open(path)
    waiter = await SqliteEventStore.open(path)
    locked = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def hold_lock(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        loop.call_soon_threadsafe(locked.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=60)
        conn.execute("ROLLBACK")

    try:
        holding = asyncio.ensure_future(holder._run(hold_lock))
        await locked.wait()
        tenant = new_tenant()
        appending = asyncio.ensure_future(waiter.append(tenant, "s", 0, new_events(1)))
        ticks = 0
        while ticks < 20:  # the loop runs while the append waits for the lock
            await asyncio.sleep(0)
            ticks += 1
        assert not appending.done()
        release.set()
        await holding
        result = await appending
        assert result.first_version == 1
    finally:
        release.set()
        await holder.close()
        await waiter.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from runtime.store.port import WrongExpectedVersion
    from runtime.store.sqlite import SqliteEventStore
    from tests.store.contract import new_event

    async def main(path, tenant, count):
        store = SqliteEventStore(path)
        try:
            for _ in range(count):
                event = new_event()
                while True:
                    version = await store.stream_version(tenant, "shared")
                    try:
                        await store.append(tenant, "shared", version, [event])
                        break
                    except WrongExpectedVersion:
                        pass
        finally:
            await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_several_processes_create_and_append_to_one_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "baton.db"
    tenant = new_tenant()
    processes, per_process = 3, 15
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            str(path),
            tenant,
            str(per_process),
            cwd=REPO_ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    async with asyncio.timeout(120):
        for proc in procs:
            _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
    store = await SqliteEventStore.open(path)
    try:
        recorded = await store.read_stream(tenant, "shared")
        assert [r.version for r in recorded] == list(range(1, processes * per_process + 1))
        assert len({r.event_id for r in recorded}) == processes * per_process
        assert recorded[0].recorded_at.tzinfo is not None
        assert datetime.now(UTC) - recorded[-1].recorded_at < timedelta(minutes=5)
    finally:
        await store.close()


async def test_deadlines_schedule_get_move_and_cancel(tmp_path: Path) -> None:
    store = SqliteDeadlineStore(tmp_path / "baton.db")
    try:
        tenant = new_tenant()
        at = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
        await store.schedule(Deadline("promise", tenant, "p1", at, {"owner": "ann", "n": 1}))
        got = await store.get("promise", tenant, "p1")
        assert got == Deadline("promise", tenant, "p1", at, {"owner": "ann", "n": 1})
        assert got.due_at.utcoffset() == timedelta(0)
        assert await store.get("promise", tenant, "p2") is None
        assert await store.get("reminder", tenant, "p1") is None

        later = (at + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
        await store.schedule(Deadline("promise", tenant, "p1", later))  # moves it
        assert await store.count("promise") == 1
        moved = await store.get("promise", tenant, "p1")
        assert moved is not None
        assert (moved.due_at, moved.data) == (later, {})

        await store.cancel("promise", tenant, "p1", due_at=at)  # stale: stays
        assert await store.get("promise", tenant, "p1") is not None
        await store.cancel("promise", tenant, "p1", due_at=later)
        assert await store.get("promise", tenant, "p1") is None
        await store.cancel("promise", tenant, "p1")  # again: no error
        assert await store.count("promise") == 0
    finally:
        await store.close()


async def test_due_deadlines_are_earliest_first_across_tenants(tmp_path: Path) -> None:
    store = await SqliteDeadlineStore.open(tmp_path / "baton.db")
    try:
        t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
        t1, t2 = new_tenant(), new_tenant()
        for timer, tenant, key, minutes in (
            ("promise", t1, "c", 3),
            ("promise", t2, "a", 1),
            ("promise", t1, "b", 2),
            ("promise", t2, "later", 60),
            ("reminder", t1, "r", 0),
        ):
            await store.schedule(Deadline(timer, tenant, key, t0 + timedelta(minutes=minutes)))
        now = t0 + timedelta(minutes=3)
        assert [d.key for d in await store.due("promise", now)] == ["a", "b", "c"]
        assert [d.key for d in await store.due("promise", now, limit=2)] == ["a", "b"]
        # The same instant in another zone is the same instant.
        elsewhere = now.astimezone(timezone(timedelta(hours=9)))
        assert [d.key for d in await store.due("promise", elsewhere)] == ["a", "b", "c"]
        assert await store.due("promise", t0) == []
        assert [d.key for d in await store.due("reminder", now)] == ["r"]
        assert await store.count("promise") == 4
        assert await store.count("reminder") == 1
        plan = await store._run(
            lambda conn: conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM deadlines WHERE timer = 'promise' "
                "AND due_at <= '2030' ORDER BY due_at, tenant_id, key LIMIT 5"
            ).fetchall()
        )
        text = " ".join(str(r[-1]) for r in plan)
        assert "deadlines_due" in text
        assert "TEMP B-TREE" not in text
        with pytest.raises(ValueError):
            await store.schedule(Deadline("promise", t1, "naive", datetime(2025, 1, 1)))
    finally:
        await store.close()
