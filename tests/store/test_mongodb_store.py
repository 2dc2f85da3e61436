"""``runtime.store.mongodb``: the shared store contract, plus what is specific to MongoDB.

Two backends run the same tests:

- mongomock, through the async facade in ``tests/store/mongomock_async.py``: always.
  One fresh in-memory database per test, shared by every store object of that test.
- a real MongoDB (``@pytest.mark.mongodb``): the server at ``MONGODB_URI`` if set,
  otherwise a single-node replica set started once per session with testcontainers
  when a Docker engine answers; skipped otherwise. One database per test, dropped after.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, IndexModel, WriteConcern
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from runtime.store.mongodb import MongoDeadlineStore, MongoEventStore, MongoViewStore
from runtime.store.port import Deadline, EventStore, ViewStore, WrongExpectedVersion
from tests.store.contract import (
    EventStoreContract,
    ViewStoreContract,
    new_event,
    new_events,
    new_stream,
    new_tenant,
)
from tests.store.mongomock_async import AsyncMockDatabase

GAP_TIMEOUT_S = 0.25
"""How long read_all waits for a missing position in these tests (production: 2 s)."""

# ----------------------------------------------------------------- the backends


def _docker_engine_answers() -> bool:
    try:
        import docker  # installed with testcontainers

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _testcontainers_installed() -> bool:
    try:
        import testcontainers.community.mongodb  # noqa: F401
    except ImportError:
        return False
    return True


def _real_server_skip_reason() -> str | None:
    if os.environ.get("MONGODB_URI"):
        return None
    if not _testcontainers_installed():
        return "no real MongoDB: set MONGODB_URI, or install testcontainers[mongodb] and Docker"
    if not _docker_engine_answers():
        return "no real MongoDB: MONGODB_URI is not set and no Docker engine answers"
    return None


_SKIP_REAL = _real_server_skip_reason()
_server: dict[str, str] = {}


def _start_replica_set_container() -> str:
    """A single-node replica set in Docker (started once per session, stopped at exit)."""
    from pymongo import MongoClient
    from testcontainers.community.mongodb import MongoDbContainer

    class ReplicaSetMongo(MongoDbContainer):
        """The official image without a root user: auth with --replSet needs a keyFile."""

        def _configure(self) -> None:
            pass

        def get_connection_url(self) -> str:
            host = self.get_container_host_ip()
            port = self.get_exposed_port(self.port)
            return f"mongodb://{host}:{port}/?directConnection=true"

    container = ReplicaSetMongo(os.environ.get("MONGODB_IMAGE", "mongo:7.0"))
    container.with_command("--replSet rs0 --bind_ip_all")
    container.start()
    atexit.register(container.stop)
    initiate = "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'localhost:27017'}]})"
    container.exec(["mongosh", "--quiet", "--eval", initiate])
    uri = container.get_connection_url()
    with MongoClient(uri, serverSelectionTimeoutMS=20_000) as client:
        deadline = time.monotonic() + 60
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica set did not elect a primary")
            time.sleep(0.2)
    return uri


def _real_server_uri() -> str:
    """The server's URI; the container is started at most once (a failure is kept too)."""
    if "error" in _server:
        raise RuntimeError(_server["error"])
    if "uri" not in _server:
        try:
            _server["uri"] = os.environ.get("MONGODB_URI") or _start_replica_set_container()
        except Exception as exc:
            _server["error"] = f"{type(exc).__name__}: {exc}"
            raise
    return _server["uri"]


class _OnMongomock:
    """A fresh mongomock database per test, shared by all store objects of the test."""

    db: Any
    test_id: str

    async def set_up_database(self) -> None:
        self.db = AsyncMockDatabase.fresh(f"baton_{self.test_id}")

    async def tear_down_database(self) -> None:
        pass


class _OnRealServer:
    """A database per test on a real server (one client per test), dropped after."""

    db: Any
    test_id: str
    client: AsyncMongoClient[Any]

    async def set_up_database(self) -> None:
        try:
            uri = _real_server_uri()
        except Exception as exc:  # pragma: no cover - depends on the machine
            pytest.skip(f"could not start MongoDB in Docker: {exc}")
        self.client = AsyncMongoClient(
            uri, tz_aware=True, uuidRepresentation="standard", serverSelectionTimeoutMS=10_000
        )
        self.db = self.client[f"baton_test_{self.test_id[:20]}"]

    async def tear_down_database(self) -> None:
        await self.client.drop_database(self.db.name)
        await self.client.close()


class _EventStores:
    db: Any

    async def make_event_store(self) -> EventStore:
        return MongoEventStore(self.db, gap_timeout=GAP_TIMEOUT_S)


class _ViewStores:
    db: Any

    async def make_view_store(self) -> ViewStore:
        return MongoViewStore(self.db)


# ---------------------------------------------------------------- the contract


class TestMongomockEventStore(_OnMongomock, _EventStores, EventStoreContract):
    """The event-store contract on mongomock."""


class TestMongomockViewStore(_OnMongomock, _ViewStores, ViewStoreContract):
    """The view-store contract on mongomock."""


@pytest.mark.mongodb
@pytest.mark.skipif(_SKIP_REAL is not None, reason=_SKIP_REAL or "")
class TestRealMongoEventStore(_OnRealServer, _EventStores, EventStoreContract):
    """The event-store contract on a real MongoDB."""


@pytest.mark.mongodb
@pytest.mark.skipif(_SKIP_REAL is not None, reason=_SKIP_REAL or "")
class TestRealMongoViewStore(_OnRealServer, _ViewStores, ViewStoreContract):
    """The view-store contract on a real MongoDB."""


# ------------------------------------------------------ adapter-specific tests


class _HeldInserts:
    """Wraps a commits collection: ``insert_one`` (a commit, after its positions were
    allocated) waits until ``release`` is set. Everything else passes through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def insert_one(self, document: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.arrived.set()
        await self.release.wait()
        return await self._inner.insert_one(document, *args, **kwargs)


class _AdapterTests:
    """Behaviour the port leaves to the adapter: indexes, concerns, late writers."""

    db: Any
    test_id: str

    @pytest.fixture(autouse=True)
    async def _database(self) -> AsyncIterator[None]:
        self.test_id = os.urandom(8).hex()
        await self.set_up_database()  # type: ignore[attr-defined]
        try:
            yield
        finally:
            await self.tear_down_database()  # type: ignore[attr-defined]

    def store(self, gap_timeout: float = GAP_TIMEOUT_S) -> MongoEventStore:
        return MongoEventStore(self.db, gap_timeout=gap_timeout)

    async def tombstones(self) -> list[int]:
        found = await self.db["commits"].find({"tombstone": True}).to_list(None)
        return sorted(p for doc in found for p in doc["positions"])

    async def test_a_late_writer_is_tombstoned_and_retries_at_a_new_position(self) -> None:
        store, late = self.store(), self.store()
        await store.ensure_indexes()
        held = _HeldInserts(late._commits)
        late._commits = held
        tenant = new_tenant()
        slow, fast = new_event(), new_event()

        late_append = asyncio.create_task(late.append(tenant, new_stream(), 0, [slow]))
        await asyncio.wait_for(held.arrived.wait(), 5)  # its position is allocated
        committed = await store.append(tenant, new_stream(), 0, [fast])
        gap = committed.positions[0] - 1

        started = time.monotonic()
        batch = await store.read_all(after_position=gap - 1)
        waited = time.monotonic() - started
        # The reader did not pass the gap until the grace period was over, and then
        # filled it with a tombstone: the event after it is read, the gap is not.
        assert waited >= GAP_TIMEOUT_S
        assert [r.event_id for r in batch] == [fast.event_id]
        assert await self.tombstones() == [gap]

        held.release.set()
        result = await asyncio.wait_for(late_append, 10)
        assert held.calls == 2  # the first insert hit the tombstone, the retry landed
        assert (result.first_version, result.duplicate) == (1, False)
        assert result.positions[0] > committed.positions[0]
        after = await store.read_all(after_position=committed.positions[0])
        assert [(r.event_id, r.position) for r in after] == [(slow.event_id, result.positions[0])]
        # From the start: each event exactly once, in position order, no tombstone.
        everything = await store.read_all(after_position=gap - 1)
        assert [r.event_id for r in everything] == [fast.event_id, slow.event_id]

    async def test_a_reader_waits_for_a_writer_that_commits_within_the_grace_period(
        self,
    ) -> None:
        store, late = self.store(gap_timeout=5.0), self.store(gap_timeout=5.0)
        await store.ensure_indexes()
        held = _HeldInserts(late._commits)
        late._commits = held
        tenant = new_tenant()
        slow, fast = new_event(), new_event()

        late_append = asyncio.create_task(late.append(tenant, new_stream(), 0, [slow]))
        await asyncio.wait_for(held.arrived.wait(), 5)
        committed = await store.append(tenant, new_stream(), 0, [fast])
        reader = asyncio.create_task(store.read_all(after_position=committed.positions[0] - 2))
        await asyncio.sleep(0.1)
        assert not reader.done(), "read_all passed a position that is still in flight"
        held.release.set()
        result = await asyncio.wait_for(late_append, 5)
        batch = await asyncio.wait_for(reader, 5)
        assert [r.event_id for r in batch] == [slow.event_id, fast.event_id]
        assert result.positions == (committed.positions[0] - 1,)
        assert held.calls == 1
        assert await self.tombstones() == []

    async def test_a_reader_at_the_head_waits_for_an_allocated_position(self) -> None:
        store, late = self.store(gap_timeout=5.0), self.store(gap_timeout=5.0)
        await store.ensure_indexes()
        first = await store.append(new_tenant(), new_stream(), 0, new_events(1))
        held = _HeldInserts(late._commits)
        late._commits = held
        slow = new_event()
        late_append = asyncio.create_task(late.append(new_tenant(), new_stream(), 0, [slow]))
        await asyncio.wait_for(held.arrived.wait(), 5)
        # Nothing later is visible, but the counter says the next position is taken.
        reader = asyncio.create_task(store.read_all(after_position=first.positions[-1]))
        await asyncio.sleep(0.1)
        assert not reader.done()
        held.release.set()
        await asyncio.wait_for(late_append, 5)
        assert [r.event_id for r in await asyncio.wait_for(reader, 5)] == [slow.event_id]

    async def test_a_conflicting_append_tombstones_its_own_positions(self) -> None:
        # A generous grace period: the reader must not need it.
        stores = [self.store(gap_timeout=30.0) for _ in range(8)]
        tenant, stream = new_tenant(), new_stream()
        outcomes = await asyncio.gather(
            *(s.append(tenant, stream, 0, new_events(2)) for s in stores),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        losers = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(o, WrongExpectedVersion) for o in losers)
        async with asyncio.timeout(5):
            everything = await stores[0].read_all()
        assert [r.version for r in everything] == [1, 2]
        # Losers that had allocated positions gave them up themselves.
        allocated = (await self.db["counters"].find_one({"_id": "position"}))["value"]
        assert len(await self.tombstones()) == allocated - 2

    async def test_unique_indexes_exist_as_declared(self) -> None:
        store, views = self.store(), MongoViewStore(self.db)
        await store.ensure_indexes()
        await store.ensure_indexes()  # idempotent
        await views.ensure_indexes()
        await views.ensure_indexes()

        commits = await self.db["commits"].index_information()
        assert commits["stream_versions"]["key"] == [
            ("tenant_id", 1),
            ("stream", 1),
            ("versions", 1),
        ]
        assert commits["stream_versions"].get("unique") is True
        assert commits["stream_versions"].get("sparse") is True
        assert commits["event_ids"]["key"] == [("events.event_id", 1)]
        assert commits["event_ids"].get("unique") is True
        assert commits["positions"]["key"] == [("positions", 1)]
        assert commits["positions"].get("unique") is True
        assert commits["outbox"]["key"] == [("first_position", 1)]
        assert commits["outbox"].get("partialFilterExpression") == {"pending": True}
        assert not commits["outbox"].get("unique")
        view_indexes = await self.db["views"].index_information()
        assert view_indexes["view_tenant_key"]["key"] == [("view", 1), ("tenant_id", 1), ("key", 1)]
        assert view_indexes["view_tenant_key"].get("unique") is True
        parked = await self.db["parked"].index_information()
        assert parked["consumer_event"]["key"] == [("consumer", 1), ("event_id", 1)]
        assert parked["consumer_event"].get("unique") is True

    async def test_unique_multikey_indexes_reject_overlaps_across_documents(self) -> None:
        store = self.store()
        tenant, stream = new_tenant(), new_stream()
        result = await store.append(tenant, stream, 0, new_events(2))  # versions 1, 2
        commits = self.db["commits"]
        existing = await commits.find_one({"tenant_id": tenant})

        def commit(**fields: Any) -> dict[str, Any]:
            return {"tenant_id": tenant, "stream": stream, "versions": [9], "positions": [999],
                    "events": [{"event_id": os.urandom(16)}], **fields}  # fmt: skip

        for overlapping in (
            commit(versions=[2, 3]),  # a range overlapping 1..2, not starting at 1
            commit(positions=[998, result.positions[1]]),
            commit(events=[{"event_id": os.urandom(16)}, existing["events"][1]]),
        ):
            with pytest.raises(DuplicateKeyError):
                await commits.insert_one(overlapping)
        # Sparse: tombstones have no stream or events, and several may exist.
        await commits.insert_one({"positions": [1001], "tombstone": True})
        await commits.insert_one({"positions": [1002], "tombstone": True})
        # Repeating a key inside one document is not a clash (multikey semantics).
        await commits.insert_one(commit(versions=[3, 3], positions=[1003, 1004]))
        assert await store.stream_version(tenant, stream) == 3

    async def test_collections_use_majority_journaled_writes_and_majority_reads(self) -> None:
        events, views = self.store(), MongoViewStore(self.db)
        for collection in (events._commits, events._counters, views._views, views._parked):
            assert collection.write_concern == WriteConcern(w="majority", j=True)
            assert collection.write_concern.document == {"w": "majority", "j": True}
            assert collection.read_concern.level == "majority"
            assert collection.codec_options.tz_aware is True

    async def test_a_lost_counter_is_rebuilt_from_the_highest_position(self) -> None:
        store = self.store()
        tenant, stream = new_tenant(), new_stream()
        first = await store.append(tenant, stream, 0, new_events(3))
        await self.db.drop_collection("counters")
        fresh = self.store()  # its ensure_indexes seeds the counter again
        second = await fresh.append(tenant, stream, 3, new_events(1))
        assert second.positions[0] > first.positions[-1]

    async def test_recorded_at_comes_from_the_clock_as_a_utc_bson_date(self) -> None:
        from datetime import UTC, datetime, timedelta, timezone

        moment = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
        store = MongoEventStore(self.db, clock=lambda: moment)
        tenant, stream = new_tenant(), new_stream()
        await store.append(tenant, stream, 0, new_events(1))
        [recorded] = await store.read_stream(tenant, stream)
        assert recorded.recorded_at == datetime(2025, 6, 1, 12, 30, 15, 123000, tzinfo=UTC)
        assert recorded.recorded_at.utcoffset() == timedelta(0)
        raw = await self.db["commits"].find_one({"tenant_id": tenant})
        assert isinstance(raw["recorded_at"], datetime)

    async def test_a_batch_repeating_an_id_is_rejected_before_writing(self) -> None:
        from runtime.store.port import DuplicateEventId

        store = self.store()
        event = new_event()
        tenant, stream = new_tenant(), new_stream()
        with pytest.raises(DuplicateEventId):
            await store.append(tenant, stream, 0, [event, event])
        assert await store.stream_version(tenant, stream) == 0

    # -------------------------------------------------------------- deadlines

    async def test_deadlines_schedule_get_move_and_cancel(self) -> None:
        from datetime import UTC, datetime, timedelta

        store = MongoDeadlineStore(self.db)
        tenant = new_tenant()
        at = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
        await store.schedule(Deadline("promise", tenant, "p1", at, {"owner": "ann", "n": 1}))
        got = await store.get("promise", tenant, "p1")
        assert got == Deadline("promise", tenant, "p1", at.replace(microsecond=123000), {"owner": "ann", "n": 1})
        assert got.due_at.utcoffset() == timedelta(0)
        assert await store.get("promise", tenant, "p2") is None
        assert await store.get("reminder", tenant, "p1") is None

        later = at + timedelta(hours=1)
        await store.schedule(Deadline("promise", tenant, "p1", later))  # moves it
        assert await store.count("promise") == 1
        moved = await store.get("promise", tenant, "p1")
        assert moved is not None
        assert (moved.due_at, moved.data) == (later.replace(microsecond=123000), {})

        await store.cancel("promise", tenant, "p1", due_at=at)  # stale: stays
        assert await store.get("promise", tenant, "p1") is not None
        await store.cancel("promise", tenant, "p1", due_at=later)
        assert await store.get("promise", tenant, "p1") is None
        await store.cancel("promise", tenant, "p1")  # again: no error
        assert await store.count("promise") == 0

    async def test_due_deadlines_are_earliest_first_across_tenants(self) -> None:
        from datetime import UTC, datetime, timedelta

        store = MongoDeadlineStore(self.db)
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
        assert await store.due("promise", t0) == []
        assert [d.key for d in await store.due("reminder", now)] == ["r"]
        assert await store.count("promise") == 4
        indexes = await self.db["deadlines"].index_information()
        assert indexes["timer_tenant_key"].get("unique") is True
        assert indexes["timer_due_at"]["key"][:2] == [("timer", 1), ("due_at", 1)]
        await store.ping()
        assert store._deadlines.write_concern == WriteConcern(w="majority", j=True)
        with pytest.raises(ValueError):
            await store.schedule(Deadline("promise", t1, "naive", datetime(2025, 1, 1)))

    # ------------------------------------- the facade's claims about the server
    # These run on both backends: on a real server they check that the mongomock
    # facade imitates the server where the adapter depends on it.

    async def test_server_semantics_array_sort_and_strict_equality(self) -> None:
        things = self.db["things"]
        for i, value in enumerate(([1, 9], [5], 4, [2, 3], True, 1, 1.0, 0)):
            await things.insert_one({"_id": i, "v": value})
        numbers = {"_id": {"$lte": 3}}
        ascending = await things.find(numbers).sort("v", 1).to_list(None)
        descending = await things.find(numbers).sort("v", -1).to_list(None)
        assert [d["v"] for d in ascending] == [[1, 9], [2, 3], 4, [5]]  # by smallest
        assert [d["v"] for d in descending] == [[1, 9], [5], 4, [2, 3]]  # by largest
        assert sorted(d["_id"] for d in await things.find({"v": True}).to_list(None)) == [4]
        # 1 matches 1, 1.0 and an array holding 1, never true
        assert sorted(d["_id"] for d in await things.find({"v": 1}).to_list(None)) == [0, 5, 6]
        assert await things.count_documents({"v": 0}) == 1
        assert sorted(d["_id"] for d in await things.find({"v": 5}).to_list(None)) == [1]

    async def test_server_semantics_dates_and_binary(self) -> None:
        from datetime import UTC, datetime, timedelta, timezone

        from runtime.store import mongodb

        things = mongodb._collection(self.db, "things")
        local = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-5)))
        await things.insert_one({"_id": 1, "at": local, "raw": b"\x00\xff"})
        await things.update_one({"_id": 1}, {"$set": {"later": local + timedelta(hours=1)}})
        got = await things.find_one({"_id": 1, "later": {"$gt": local}})
        assert got is not None
        assert got["at"] == datetime(2025, 1, 2, 8, 4, 5, 678000, tzinfo=UTC)
        assert got["at"].utcoffset() == timedelta(0)
        assert type(got["raw"]) is bytes
        assert got["raw"] == b"\x00\xff"

    async def test_server_semantics_unordered_insert_many_reports_duplicates(self) -> None:
        from pymongo.errors import BulkWriteError

        things = self.db["things"]
        await things.create_indexes([IndexModel([("p", 1)], name="p_unique", unique=True)])
        await things.insert_one({"p": [2]})
        with pytest.raises(BulkWriteError) as caught:
            await things.insert_many([{"p": [1]}, {"p": [2]}, {"p": [3]}], ordered=False)
        errors = caught.value.details["writeErrors"]
        assert [(e["index"], e["code"]) for e in errors] == [(1, 11000)]
        assert await things.count_documents({}) == 3
        with pytest.raises(DuplicateKeyError) as dup:
            await things.insert_one({"p": [4, 3]})
        assert dup.value.details["keyPattern"] == {"p": 1}

    async def test_each_commit_stores_the_chain_links_of_its_events(self) -> None:
        store = self.store()
        tenant, stream = new_tenant(), new_stream()
        await store.append(tenant, stream, 0, new_events(1))
        result = await store.append(tenant, stream, 1, new_events(3))
        commit = await self.db["commits"].find_one({"tenant_id": tenant, "stream": stream, "versions": 2})
        stored = [(e["version"], e["previous_hash"], e["hash"]) for e in commit["events"]]
        records = await store.read_stream(tenant, stream)
        assert stored == [(r.version, r.previous_hash, r.hash) for r in records[1:]]
        assert tuple(h for _, _, h in stored) == result.hashes
        assert stored[0][1] == records[0].hash

    async def test_a_late_writer_rechains_on_the_head_it_finds_when_retrying(self) -> None:
        store, late = self.store(), self.store()
        await store.ensure_indexes()
        held = _HeldInserts(late._commits)
        late._commits = held
        tenant, stream = new_tenant(), new_stream()
        await store.append(tenant, stream, 0, new_events(1))
        late_append = asyncio.create_task(late.append(tenant, stream, 1, new_events(1)))
        await asyncio.wait_for(held.arrived.wait(), 5)
        await store.append(tenant, stream, 1, new_events(2))  # lands first
        held.release.set()
        with pytest.raises(WrongExpectedVersion):
            await asyncio.wait_for(late_append, 10)
        records = await store.read_stream(tenant, stream)
        assert [r.previous_hash for r in records[1:]] == [r.hash for r in records[:-1]]

    async def test_a_stream_from_before_the_chain_is_refused_with_a_clear_error(self) -> None:
        from runtime.store.port import StoreError

        store = self.store()
        tenant, stream = new_tenant(), new_stream()
        await store.append(tenant, stream, 0, new_events(1))
        await self.db["commits"].update_one(
            {"tenant_id": tenant, "stream": stream}, {"$unset": {"events.0.hash": "", "events.0.previous_hash": ""}}
        )
        (legacy,) = await store.read_stream(tenant, stream)
        assert (legacy.hash, legacy.previous_hash) == ("", "")
        with pytest.raises(StoreError, match="before the hash chain"):
            await store.append(tenant, stream, 1, new_events(1))


class TestMongomockAdapter(_OnMongomock, _AdapterTests):
    """Adapter-specific behaviour on mongomock (through the async facade)."""


@pytest.mark.mongodb
@pytest.mark.skipif(_SKIP_REAL is not None, reason=_SKIP_REAL or "")
class TestRealMongoAdapter(_OnRealServer, _AdapterTests):
    """Adapter-specific behaviour on a real MongoDB."""

    async def test_stream_version_reads_one_index_entry(self) -> None:
        store = self.store()
        tenant, stream = new_tenant(), new_stream()
        for version in range(0, 30, 3):
            await store.append(tenant, stream, version, new_events(3))
        database: AsyncDatabase[Any] = self.db
        plan = await (
            database["commits"]
            .find({"tenant_id": tenant, "stream": stream}, {"_id": 0, "versions": 1})
            .sort("versions", -1)
            .limit(1)
            .explain()
        )
        winning = json.dumps(plan["queryPlanner"]["winningPlan"], default=str)
        assert "stream_versions" in winning
        assert '"SORT"' not in winning, "the multikey index should provide the sort"
        assert await store.stream_version(tenant, stream) == 30

    async def test_from_uri_opens_and_closes_its_own_client(self) -> None:
        store = MongoEventStore.from_uri(_real_server_uri(), self.db.name)
        views = MongoViewStore.from_uri(_real_server_uri(), self.db.name)
        try:
            await store.ping()
            await views.ping()
            result = await store.append(new_tenant(), new_stream(), 0, new_events(1))
            assert result.first_version == 1
        finally:
            await store.close()
            await views.close()


async def test_from_uri_configures_a_real_async_client_without_connecting() -> None:
    """Real PyMongo objects (no server needed: the client connects lazily)."""
    store = MongoEventStore.from_uri("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200", "x")
    views = MongoViewStore.from_uri("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200", "x")
    try:
        assert store._client is not None
        assert store._client.codec_options.tz_aware is True
        for collection in (store._commits, store._counters, views._views, views._parked):
            assert type(collection).__module__ == "pymongo.asynchronous.collection"
            assert collection.write_concern == WriteConcern(w="majority", j=True)
            assert collection.read_concern.level == "majority"
            assert collection.codec_options.tz_aware is True
    finally:
        await store.close()
        await views.close()
    assert store._client is None
