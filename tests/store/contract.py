"""The store contract: one test suite every ``EventStore`` / ``ViewStore`` adapter passes.

Written once, run per adapter (in the style of pyeventsourcing's ``tests/persistence.py``).
An adapter's test module subclasses the contract classes and supplies the factory::

    class TestSqliteEventStore(EventStoreContract):
        async def make_event_store(self) -> EventStore:
            return SqliteEventStore(self.tmp_path / "baton.db")

Rules for factories:

- Every call within one test returns a **new, separately constructed** store object
  connected to the **same** database (the concurrency tests open dozens of them).
- Every test starts with an **empty** database: derive a per-test database from
  ``self.tmp_path`` or ``self.test_id`` (a fresh hex string per test).
- Extra per-test setup/teardown goes in ``set_up_database`` / ``tear_down_database``.
  Stores opened through ``open_event_store`` / ``open_view_store`` (and the
  ``event_store`` / ``view_store`` fixtures) are closed after the test, before
  ``tear_down_database`` runs.

The contract uses only the port (``runtime.store.port``): no adapter specifics here.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from runtime.audit.chain import GENESIS_HASH, event_hash
from runtime.store.port import (
    AppendResult,
    DuplicateEventId,
    EventStore,
    NewEvent,
    ParkedMessage,
    RecordedEvent,
    ViewConflict,
    ViewStore,
    WrongExpectedVersion,
)

# Generous bound so a hung store fails the test instead of the whole run.
CONCURRENCY_TIMEOUT_S = 120.0


def new_event(
    event_type: str = "ContractTested",
    data: bytes | None = None,
    metadata: bytes | None = None,
    schema_version: int = 1,
) -> NewEvent:
    """A new event with a fresh id and payload bytes that are not valid UTF-8 or JSON."""
    event_id = uuid4()
    return NewEvent(
        event_id=event_id,
        event_type=event_type,
        schema_version=schema_version,
        data=data if data is not None else b"\x00\xff\xfe{" + event_id.bytes + b"\x00",
        metadata=metadata if metadata is not None else b'{"m":"\xc3\xa9"}\x00' + os.urandom(8),
    )


def new_events(n: int, event_type: str = "ContractTested") -> list[NewEvent]:
    """``n`` new events."""
    return [new_event(event_type) for _ in range(n)]


def new_tenant() -> str:
    """A tenant id no other test uses."""
    return f"tenant-{uuid4().hex}"


def new_stream() -> str:
    """A stream name no other test uses."""
    return f"customer-{uuid4().hex}"


class _StoreContractBase:
    """Per-test lifecycle shared by both contracts."""

    tmp_path: Path
    """A fresh directory per test (for adapters that keep files)."""
    test_id: str
    """A fresh hex id per test (for adapters that name a database per test)."""

    _to_close: list[EventStore | ViewStore]

    async def set_up_database(self) -> None:
        """Override for per-test setup the factory relies on. Default: nothing."""

    async def tear_down_database(self) -> None:
        """Override for per-test cleanup (e.g. drop the per-test database). Default: nothing."""

    @pytest.fixture(autouse=True)
    async def _store_contract_lifecycle(self, tmp_path: Path) -> AsyncIterator[None]:
        self.tmp_path = tmp_path
        self.test_id = uuid4().hex
        self._to_close = []
        await self.set_up_database()
        try:
            yield
        finally:
            for store in reversed(self._to_close):
                with suppress(Exception):
                    await store.close()
            await self.tear_down_database()


class EventStoreContract(_StoreContractBase, abc.ABC):
    """The ``EventStore`` contract. Subclass it and implement ``make_event_store``."""

    @abc.abstractmethod
    async def make_event_store(self) -> EventStore:
        """A new store object on this test's database (see the module docstring)."""

    async def open_event_store(self) -> EventStore:
        """``make_event_store``, closed automatically after the test."""
        store = await self.make_event_store()
        self._to_close.append(store)
        return store

    @pytest.fixture
    async def event_store(self) -> EventStore:
        return await self.open_event_store()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def assert_same_event(recorded: RecordedEvent, new: NewEvent) -> None:
        assert recorded.event_id == new.event_id
        assert isinstance(recorded.event_id, UUID)
        assert recorded.event_type == new.event_type
        assert recorded.schema_version == new.schema_version
        assert type(recorded.data) is bytes
        assert type(recorded.metadata) is bytes
        assert recorded.data == new.data
        assert recorded.metadata == new.metadata

    @staticmethod
    async def read_all_pages(
        store: EventStore, after: int = 0, page: int = 7
    ) -> list[RecordedEvent]:
        """Everything after ``after``, following ``read_all`` page by page."""
        out: list[RecordedEvent] = []
        while True:
            batch = await store.read_all(after_position=after, limit=page)
            if not batch:
                return out
            assert len(batch) <= page
            assert batch[0].position > after, "read_all returned a position it was told to skip"
            out.extend(batch)
            after = batch[-1].position

    # ------------------------------------------------------------ append / read

    async def test_append_then_read_stream_returns_the_same_bytes(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        events = [
            new_event("A", data=b"", metadata=b""),
            new_event("B", schema_version=3),
            new_event("C", data=bytes(range(256)), metadata=b"\x00" * 10),
        ]
        result = await event_store.append(tenant, stream, 0, events)

        recorded = await event_store.read_stream(tenant, stream)
        assert len(recorded) == 3
        for version, (rec, new) in enumerate(zip(recorded, events, strict=True), start=1):
            self.assert_same_event(rec, new)
            assert rec.tenant_id == tenant
            assert rec.stream == stream
            assert rec.version == version
        positions = [r.position for r in recorded]
        assert all(p > 0 for p in positions)
        assert positions == sorted(set(positions))
        assert result == AppendResult(
            first_version=1,
            last_version=3,
            positions=tuple(positions),
            duplicate=False,
            hashes=tuple(r.hash for r in recorded),
        )

    async def test_append_result_reports_the_next_versions_and_positions(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        first = await event_store.append(tenant, stream, 0, new_events(2))
        second = await event_store.append(tenant, stream, 2, new_events(3))
        assert (first.first_version, first.last_version) == (1, 2)
        assert (second.first_version, second.last_version) == (3, 5)
        assert not first.duplicate
        assert not second.duplicate
        assert len(second.positions) == 3
        assert min(second.positions) > max(first.positions)
        recorded = await event_store.read_stream(tenant, stream)
        assert tuple(r.position for r in recorded) == first.positions + second.positions

    async def test_missing_stream_is_empty_at_version_zero(self, event_store: EventStore) -> None:
        tenant = new_tenant()
        await event_store.append(tenant, new_stream(), 0, new_events(1))
        missing = new_stream()
        assert await event_store.read_stream(tenant, missing) == []
        assert await event_store.stream_version(tenant, missing) == 0
        assert await event_store.read_stream(new_tenant(), missing, after_version=3) == []

    async def test_stream_version_follows_appends(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        await event_store.append(tenant, stream, 0, new_events(2))
        assert await event_store.stream_version(tenant, stream) == 2
        await event_store.append(tenant, stream, 2, new_events(1))
        assert await event_store.stream_version(tenant, stream) == 3

    async def test_streams_are_separate_per_tenant_and_name(self, event_store: EventStore) -> None:
        tenant_a, tenant_b, stream, other = new_tenant(), new_tenant(), new_stream(), new_stream()
        a = new_events(2)
        b = new_events(1)
        c = new_events(3)
        await event_store.append(tenant_a, stream, 0, a)
        await event_store.append(tenant_b, stream, 0, b)  # same stream name, other tenant
        await event_store.append(tenant_a, other, 0, c)
        assert [r.event_id for r in await event_store.read_stream(tenant_a, stream)] == [
            e.event_id for e in a
        ]
        assert [r.event_id for r in await event_store.read_stream(tenant_b, stream)] == [
            e.event_id for e in b
        ]
        assert [r.event_id for r in await event_store.read_stream(tenant_a, other)] == [
            e.event_id for e in c
        ]
        assert await event_store.stream_version(tenant_a, stream) == 2
        assert await event_store.stream_version(tenant_b, stream) == 1
        assert await event_store.stream_version(tenant_a, other) == 3

    async def test_read_stream_slicing(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        await event_store.append(tenant, stream, 0, new_events(4))
        await event_store.append(tenant, stream, 4, new_events(6))

        async def versions(**kwargs: Any) -> list[int]:
            return [r.version for r in await event_store.read_stream(tenant, stream, **kwargs)]

        assert await versions() == list(range(1, 11))
        assert await versions(after_version=3) == list(range(4, 11))
        assert await versions(until_version=4) == [1, 2, 3, 4]
        assert await versions(after_version=2, until_version=6) == [3, 4, 5, 6]
        assert await versions(limit=3) == [1, 2, 3]
        assert await versions(after_version=5, limit=2) == [6, 7]
        assert await versions(after_version=5, until_version=6, limit=5) == [6]
        assert await versions(after_version=8, limit=5) == [9, 10]
        assert await versions(after_version=10) == []
        assert await versions(after_version=4, until_version=4) == []

    async def test_stores_on_the_same_database_see_each_other(
        self, event_store: EventStore
    ) -> None:
        other = await self.open_event_store()
        tenant, stream = new_tenant(), new_stream()
        events = new_events(2)
        await event_store.append(tenant, stream, 0, events)
        assert await other.stream_version(tenant, stream) == 2
        assert [r.event_id for r in await other.read_stream(tenant, stream)] == [
            e.event_id for e in events
        ]
        with pytest.raises(WrongExpectedVersion):
            await other.append(tenant, stream, 0, new_events(1))

    async def test_empty_append_is_rejected(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        with pytest.raises(ValueError):
            await event_store.append(tenant, stream, 0, [])
        assert await event_store.stream_version(tenant, stream) == 0

    async def test_recorded_at_is_timezone_aware_and_current(self, event_store: EventStore) -> None:
        before = datetime.now(UTC)
        tenant, stream = new_tenant(), new_stream()
        await event_store.append(tenant, stream, 0, new_events(2))
        after = datetime.now(UTC)
        for rec in [
            *await event_store.read_stream(tenant, stream),
            *await event_store.read_all(),
            *await event_store.unpublished(),
        ]:
            assert rec.recorded_at.tzinfo is not None
            assert rec.recorded_at.utcoffset() is not None
            # Loose: adapters may use the database server's clock.
            assert before - timedelta(minutes=5) <= rec.recorded_at <= after + timedelta(minutes=5)

    async def test_ping(self, event_store: EventStore) -> None:
        await event_store.ping()

    # ------------------------------------------------------------- concurrency

    async def test_wrong_expected_version_raises_and_writes_nothing(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        original = new_events(2)
        await event_store.append(tenant, stream, 0, original)
        rejected = new_events(1)
        for expected in (1, 3, 7):
            with pytest.raises(WrongExpectedVersion) as caught:
                await event_store.append(tenant, stream, expected, rejected)
            assert caught.value.expected == expected
            assert caught.value.actual == 2
            assert caught.value.tenant_id == tenant
            assert caught.value.stream == stream
        recorded = await event_store.read_stream(tenant, stream)
        assert [r.event_id for r in recorded] == [e.event_id for e in original]
        assert await event_store.stream_version(tenant, stream) == 2
        all_ids = {r.event_id for r in await self.read_all_pages(event_store)}
        assert rejected[0].event_id not in all_ids

    async def test_expected_zero_on_an_existing_stream_conflicts(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        await event_store.append(tenant, stream, 0, new_events(1))
        with pytest.raises(WrongExpectedVersion) as caught:
            await event_store.append(tenant, stream, 0, new_events(1))
        assert (caught.value.expected, caught.value.actual) == (0, 1)
        assert await event_store.stream_version(tenant, stream) == 1

    async def test_expected_version_on_a_missing_stream_conflicts(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        with pytest.raises(WrongExpectedVersion) as caught:
            await event_store.append(tenant, stream, 1, new_events(1))
        assert (caught.value.expected, caught.value.actual) == (1, 0)
        assert await event_store.read_stream(tenant, stream) == []

    async def test_a_conflicting_multi_event_append_writes_none_of_its_events(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        await event_store.append(tenant, stream, 0, new_events(1))
        batch = new_events(3)
        with pytest.raises(WrongExpectedVersion):
            await event_store.append(tenant, stream, 0, batch)
        assert await event_store.stream_version(tenant, stream) == 1
        stored = {r.event_id for r in await self.read_all_pages(event_store)}
        assert stored.isdisjoint({e.event_id for e in batch})
        assert {e.event_id for e in batch}.isdisjoint(
            {r.event_id for r in await event_store.unpublished()}
        )
        # The same ids are still free: the right expected version takes all of them.
        result = await event_store.append(tenant, stream, 1, batch)
        assert (result.first_version, result.last_version, result.duplicate) == (2, 4, False)
        assert [r.event_id for r in await event_store.read_stream(tenant, stream, 1)] == [
            e.event_id for e in batch
        ]

    # -------------------------------------------------------------- idempotency

    async def test_reappending_the_same_events_is_idempotent(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        await event_store.append(tenant, stream, 0, new_events(1))
        batch = new_events(3)
        first = await event_store.append(tenant, stream, 1, batch)
        later = new_events(1)
        await event_store.append(tenant, stream, 4, later)
        before = await self.read_all_pages(event_store)

        # Retry with the original (now stale) expected version.
        again = await event_store.append(tenant, stream, 1, batch)
        assert again.duplicate is True
        assert (again.first_version, again.last_version) == (2, 4)
        assert again.positions == first.positions
        # And with the current expected version: still a duplicate, nothing written.
        again2 = await event_store.append(tenant, stream, 5, batch)
        assert again2.duplicate is True
        assert (again2.first_version, again2.last_version) == (2, 4)
        assert again2.positions == first.positions

        assert await event_store.stream_version(tenant, stream) == 5
        after = await self.read_all_pages(event_store)
        assert [(r.event_id, r.position) for r in after] == [
            (r.event_id, r.position) for r in before
        ]

    async def test_reappending_a_single_event_is_idempotent(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        event = new_event()
        first = await event_store.append(tenant, stream, 0, [event])
        again = await event_store.append(tenant, stream, 0, [event])
        assert again.duplicate is True
        assert (again.first_version, again.last_version, again.positions) == (
            1,
            1,
            first.positions,
        )
        assert len(await event_store.read_stream(tenant, stream)) == 1

    async def test_partially_overlapping_ids_raise_duplicate_and_write_nothing(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        existing = new_events(2)
        await event_store.append(tenant, stream, 0, existing)
        fresh = new_event()
        for batch in ([existing[1], fresh], [fresh, existing[0]], [*existing, fresh]):
            for expected in (0, 2):
                with pytest.raises(DuplicateEventId):
                    await event_store.append(tenant, stream, expected, batch)
        assert await event_store.stream_version(tenant, stream) == 2
        stored = {r.event_id for r in await self.read_all_pages(event_store)}
        assert fresh.event_id not in stored
        # The fresh id was not consumed.
        result = await event_store.append(tenant, stream, 2, [fresh])
        assert (result.first_version, result.duplicate) == (3, False)

    async def test_same_ids_in_another_order_raise_duplicate(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        events = new_events(2)
        await event_store.append(tenant, stream, 0, events)
        with pytest.raises(DuplicateEventId):
            await event_store.append(tenant, stream, 0, list(reversed(events)))
        assert await event_store.stream_version(tenant, stream) == 2

    async def test_an_id_used_in_another_stream_raises_duplicate(
        self, event_store: EventStore
    ) -> None:
        tenant, stream, other = new_tenant(), new_stream(), new_stream()
        event = new_event()
        await event_store.append(tenant, stream, 0, [event])
        for target_tenant, target_stream in ((tenant, other), (new_tenant(), stream)):
            with pytest.raises(DuplicateEventId):
                await event_store.append(target_tenant, target_stream, 0, [event])
            with pytest.raises(DuplicateEventId):
                await event_store.append(target_tenant, target_stream, 0, [new_event(), event])
            assert await event_store.read_stream(target_tenant, target_stream) == []
        assert len(await self.read_all_pages(event_store)) == 1

    # ---------------------------------------------------------------- hash chain

    @staticmethod
    def recomputed(record: RecordedEvent) -> str:
        """The record's hash as ``runtime.audit.chain`` computes it from the stored fields."""
        return event_hash(
            previous_hash=record.previous_hash,
            tenant_id=record.tenant_id,
            stream=record.stream,
            version=record.version,
            event_id=record.event_id,
            event_type=record.event_type,
            schema_version=record.schema_version,
            data=record.data,
            metadata=record.metadata,
        )

    def assert_chained(self, records: list[RecordedEvent]) -> None:
        """Versions 1..n, each linked to the one before (genesis first), hashes recomputable."""
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        previous = GENESIS_HASH
        for record in records:
            assert len(record.hash) == 64 and record.hash == record.hash.lower()
            int(record.hash, 16)
            assert record.previous_hash == previous, f"v{record.version} does not link to v{record.version - 1}"
            assert record.hash == self.recomputed(record), f"v{record.version}: stored hash differs"
            previous = record.hash

    async def test_the_first_event_of_a_stream_links_to_genesis(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        result = await event_store.append(tenant, stream, 0, [new_event()])
        (record,) = await event_store.read_stream(tenant, stream)
        assert record.previous_hash == GENESIS_HASH == "0" * 64
        assert record.hash == self.recomputed(record)
        assert result.hashes == (record.hash,)

    async def test_events_chain_within_their_stream_across_appends(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        results = []
        version = 0
        for size in (1, 3, 1, 2):
            results.append(await event_store.append(tenant, stream, version, new_events(size)))
            version += size
        records = await event_store.read_stream(tenant, stream)
        self.assert_chained(records)
        assert [h for r in results for h in r.hashes] == [r.hash for r in records]
        # read_all and the outbox return the same links.
        links = {r.event_id: (r.hash, r.previous_hash) for r in records}
        assert all(links[r.event_id] == (r.hash, r.previous_hash) for r in await self.read_all_pages(event_store))
        assert all(links[r.event_id] == (r.hash, r.previous_hash) for r in await event_store.unpublished(100))

    async def test_a_multi_event_append_chains_inside_the_commit(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        await event_store.append(tenant, stream, 0, new_events(2))
        result = await event_store.append(tenant, stream, 2, new_events(4))
        records = await event_store.read_stream(tenant, stream)
        self.assert_chained(records)
        commit = records[2:]
        assert result.hashes == tuple(r.hash for r in commit)
        assert commit[0].previous_hash == records[1].hash
        assert [r.previous_hash for r in commit[1:]] == [r.hash for r in commit[:-1]]

    async def test_chains_are_separate_per_stream_and_tenant(self, event_store: EventStore) -> None:
        tenant, other_tenant, stream, other_stream = new_tenant(), new_tenant(), new_stream(), new_stream()
        places = ((tenant, stream), (tenant, other_stream), (other_tenant, stream))
        for place_tenant, place_stream in places:
            await event_store.append(place_tenant, place_stream, 0, [new_event(data=b"same", metadata=b"same")])
        heads = [(await event_store.read_stream(t, s))[0] for t, s in places]
        assert all(h.previous_hash == GENESIS_HASH for h in heads)
        assert len({h.hash for h in heads}) == 3  # tenant, stream and event id are covered

    async def test_an_idempotent_reappend_returns_the_stored_hashes(self, event_store: EventStore) -> None:
        tenant, stream = new_tenant(), new_stream()
        batch = new_events(3)
        first = await event_store.append(tenant, stream, 0, batch)
        await event_store.append(tenant, stream, 3, new_events(1))
        again = await event_store.append(tenant, stream, 0, batch)
        assert again.duplicate is True
        assert again.hashes == first.hashes and len(first.hashes) == 3
        records = await event_store.read_stream(tenant, stream)
        assert tuple(r.hash for r in records[:3]) == first.hashes
        self.assert_chained(records)

    async def test_concurrent_appenders_keep_one_linear_chain(self) -> None:
        n = 12
        stores = [await self.open_event_store() for _ in range(n)]
        tenant, stream = new_tenant(), new_stream()

        async def appender(store: EventStore) -> None:
            batch = new_events(2)
            while True:
                version = await store.stream_version(tenant, stream)
                try:
                    await store.append(tenant, stream, version, batch)
                    return
                except WrongExpectedVersion:
                    await asyncio.sleep(0)

        async with asyncio.timeout(CONCURRENCY_TIMEOUT_S):
            await asyncio.gather(*(appender(s) for s in stores))
        records = await stores[0].read_stream(tenant, stream)
        assert len(records) == 2 * n
        self.assert_chained(records)

    # ------------------------------------------------------ concurrent appenders

    async def test_fifty_concurrent_appenders_on_one_stream(self) -> None:
        n = 50
        stores = [await self.open_event_store() for _ in range(n)]
        tenant, stream = new_tenant(), new_stream()
        events = new_events(n)
        conflicts = 0

        async def appender(store: EventStore, event: NewEvent) -> AppendResult:
            nonlocal conflicts
            while True:
                version = await store.stream_version(tenant, stream)
                try:
                    return await store.append(tenant, stream, version, [event])
                except WrongExpectedVersion:
                    conflicts += 1

        async with asyncio.timeout(CONCURRENCY_TIMEOUT_S):
            results = await asyncio.gather(
                *(appender(s, e) for s, e in zip(stores, events, strict=True))
            )

        assert all(not r.duplicate and r.first_version == r.last_version for r in results)
        assert sorted(r.first_version for r in results) == list(range(1, n + 1))
        recorded = await stores[0].read_stream(tenant, stream)
        assert [r.version for r in recorded] == list(range(1, n + 1))
        ids = [r.event_id for r in recorded]
        assert len(set(ids)) == n
        assert set(ids) == {e.event_id for e in events}
        positions = [r.position for r in recorded]
        assert positions == sorted(set(positions))
        assert await stores[-1].stream_version(tenant, stream) == n

    async def test_read_all_under_concurrent_appends_never_skips(self) -> None:
        writers = 6
        appends_per_writer = 12
        writer_stores = [await self.open_event_store() for _ in range(writers)]
        reader_store = await self.open_event_store()
        tenant = new_tenant()
        appended: list[UUID] = []
        done = asyncio.Event()

        async def writer(store: EventStore, w: int) -> None:
            # Half the writers share one contended stream, the rest have their own.
            stream = "shared" if w % 2 == 0 else f"own-{w}"
            for i in range(appends_per_writer):
                batch = new_events(1 + (i % 3))
                while True:
                    version = await store.stream_version(tenant, stream)
                    try:
                        await store.append(tenant, stream, version, batch)
                        break
                    except WrongExpectedVersion:
                        continue
                appended.extend(e.event_id for e in batch)

        seen_ids: list[UUID] = []
        seen_positions: list[int] = []
        reads = 0

        async def reader() -> None:
            nonlocal reads
            last = 0
            while True:
                finished = done.is_set()  # read once more after the writers are done
                batch = await reader_store.read_all(after_position=last, limit=5)
                reads += 1
                for rec in batch:
                    assert rec.position > last, "read_all went backwards"
                    seen_ids.append(rec.event_id)
                    seen_positions.append(rec.position)
                if batch:
                    last = batch[-1].position
                elif finished:
                    return
                else:
                    await asyncio.sleep(0)

        async def writers_then_done() -> None:
            try:
                await asyncio.gather(*(writer(s, w) for w, s in enumerate(writer_stores)))
            finally:
                done.set()

        async with asyncio.timeout(CONCURRENCY_TIMEOUT_S):
            await asyncio.gather(reader(), writers_then_done())

        assert len(appended) == len(set(appended))
        assert len(seen_ids) == len(set(seen_ids)), "read_all returned an event twice"
        assert set(seen_ids) == set(appended), "read_all skipped events"
        assert all(a < b for a, b in itertools.pairwise(seen_positions))
        assert reads > 1

    # ---------------------------------------------------------------- read_all

    async def test_read_all_is_in_position_order_and_resumes_after_a_position(
        self, event_store: EventStore
    ) -> None:
        tenant = new_tenant()
        s1, s2 = new_stream(), new_stream()
        order: list[UUID] = []
        for stream, version, events in (
            (s1, 0, new_events(2)),
            (s2, 0, new_events(1)),
            (s1, 2, new_events(3)),
            (s2, 1, new_events(2)),
        ):
            await event_store.append(tenant, stream, version, events)
            order.extend(e.event_id for e in events)

        everything = await event_store.read_all()
        assert [r.event_id for r in everything] == order
        positions = [r.position for r in everything]
        assert all(a < b for a, b in itertools.pairwise(positions))
        # Each record carries its stream and version.
        by_stream: dict[str, list[int]] = {}
        for r in everything:
            assert r.tenant_id == tenant
            by_stream.setdefault(r.stream, []).append(r.version)
        assert by_stream == {s1: [1, 2, 3, 4, 5], s2: [1, 2, 3]}

        for cut in range(len(everything)):
            rest = await event_store.read_all(after_position=positions[cut])
            assert [r.event_id for r in rest] == order[cut + 1 :]
        assert await event_store.read_all(after_position=positions[-1]) == []
        assert [r.event_id for r in await event_store.read_all(limit=3)] == order[:3]
        assert [
            r.event_id for r in await event_store.read_all(after_position=positions[1], limit=2)
        ] == order[2:4]
        assert [r.event_id for r in await self.read_all_pages(event_store, page=3)] == order
        # Same bytes through read_all as through read_stream.
        streamed = {r.event_id: r for r in await event_store.read_stream(tenant, s1)}
        for r in everything:
            if r.event_id in streamed:
                assert r == streamed[r.event_id]

    # ------------------------------------------------------------------ outbox

    async def test_unpublished_is_the_outbox_in_position_order(
        self, event_store: EventStore
    ) -> None:
        tenant, s1, s2 = new_tenant(), new_stream(), new_stream()
        order: list[UUID] = []
        for stream, version, events in (
            (s1, 0, new_events(2)),
            (s2, 0, new_events(2)),
            (s1, 2, new_events(1)),
        ):
            await event_store.append(tenant, stream, version, events)
            order.extend(e.event_id for e in events)

        pending = await event_store.unpublished()
        assert [r.event_id for r in pending] == order
        positions = [r.position for r in pending]
        assert all(a < b for a, b in itertools.pairwise(positions))
        assert [r.event_id for r in await event_store.unpublished(limit=2)] == order[:2]
        # The outbox hands out full records.
        streamed = {r.event_id: r for r in await event_store.read_stream(tenant, s1)}
        for r in pending:
            if r.event_id in streamed:
                assert r == streamed[r.event_id]

    async def test_mark_published_removes_from_the_outbox_and_is_idempotent(
        self, event_store: EventStore
    ) -> None:
        tenant, stream = new_tenant(), new_stream()
        events = new_events(5)
        await event_store.append(tenant, stream, 0, events)
        ids = [e.event_id for e in events]

        await event_store.mark_published([ids[0], ids[2]])
        assert [r.event_id for r in await event_store.unpublished()] == [ids[1], ids[3], ids[4]]
        await event_store.mark_published([ids[2], ids[0]])  # again: no change, no error
        await event_store.mark_published([])
        await event_store.mark_published([uuid4()])  # unknown ids are ignored
        assert [r.event_id for r in await event_store.unpublished()] == [ids[1], ids[3], ids[4]]
        await event_store.mark_published(ids)
        assert await event_store.unpublished() == []
        # Publishing marks never hide events from readers.
        assert [r.event_id for r in await event_store.read_stream(tenant, stream)] == ids
        assert [r.event_id for r in await event_store.read_all()] == ids
        # New appends enter the outbox.
        later = new_events(1)
        await event_store.append(tenant, stream, 5, later)
        assert [r.event_id for r in await event_store.unpublished()] == [later[0].event_id]

    async def test_mark_published_is_seen_by_other_store_objects(
        self, event_store: EventStore
    ) -> None:
        other = await self.open_event_store()
        tenant, stream = new_tenant(), new_stream()
        events = new_events(3)
        await event_store.append(tenant, stream, 0, events)
        await other.mark_published([events[1].event_id])
        assert [r.event_id for r in await event_store.unpublished()] == [
            events[0].event_id,
            events[2].event_id,
        ]


class ViewStoreContract(_StoreContractBase, abc.ABC):
    """The ``ViewStore`` contract. Subclass it and implement ``make_view_store``."""

    @abc.abstractmethod
    async def make_view_store(self) -> ViewStore:
        """A new store object on this test's database (see the module docstring)."""

    async def open_view_store(self) -> ViewStore:
        """``make_view_store``, closed automatically after the test."""
        store = await self.make_view_store()
        self._to_close.append(store)
        return store

    @pytest.fixture
    async def view_store(self) -> ViewStore:
        return await self.open_view_store()

    # ------------------------------------------------------------------- views

    async def test_load_of_a_missing_document_is_none(self, view_store: ViewStore) -> None:
        tenant = new_tenant()
        await view_store.save("owners", tenant, "k1", {"a": 1}, 1, 0)
        assert await view_store.load("owners", tenant, "missing") is None
        assert await view_store.load("owners", new_tenant(), "k1") is None
        assert await view_store.load("other-view", tenant, "k1") is None

    async def test_save_new_then_load_round_trips(self, view_store: ViewStore) -> None:
        tenant = new_tenant()
        doc: dict[str, Any] = {
            "owner": "agent-7",
            "count": 3,
            "ratio": 0.25,
            "open": True,
            "closed": False,
            "note": None,
            "tags": ["a", "b", 1],
            "nested": {"x": {"y": [1, {"z": "é ✓"}]}},
            "empty": {},
        }
        await view_store.save("owners", tenant, "cust-1", doc, 1, 0)
        loaded = await view_store.load("owners", tenant, "cust-1")
        assert loaded is not None
        assert loaded.key == "cust-1"
        assert loaded.version == 1
        assert loaded.doc == doc

        await view_store.save("owners", tenant, "cust-1", {"owner": "agent-9"}, 2, 1)
        loaded = await view_store.load("owners", tenant, "cust-1")
        assert loaded is not None
        assert (loaded.version, loaded.doc) == (2, {"owner": "agent-9"})

    async def test_save_may_jump_versions(self, view_store: ViewStore) -> None:
        tenant = new_tenant()
        await view_store.save("checkpoints", tenant, "relay", {"position": 10}, 10, 0)
        await view_store.save("checkpoints", tenant, "relay", {"position": 25}, 25, 10)
        loaded = await view_store.load("checkpoints", tenant, "relay")
        assert loaded is not None
        assert (loaded.version, loaded.doc) == (25, {"position": 25})

    async def test_save_with_a_stale_version_conflicts_and_changes_nothing(
        self, view_store: ViewStore
    ) -> None:
        tenant = new_tenant()
        await view_store.save("owners", tenant, "k", {"owner": "a"}, 1, 0)
        await view_store.save("owners", tenant, "k", {"owner": "b"}, 2, 1)
        for expected in (1, 3):
            with pytest.raises(ViewConflict):
                await view_store.save("owners", tenant, "k", {"owner": "c"}, expected + 1, expected)
        loaded = await view_store.load("owners", tenant, "k")
        assert loaded is not None
        assert (loaded.version, loaded.doc) == (2, {"owner": "b"})

    async def test_save_new_on_an_existing_document_conflicts(self, view_store: ViewStore) -> None:
        tenant = new_tenant()
        await view_store.save("owners", tenant, "k", {"owner": "a"}, 1, 0)
        with pytest.raises(ViewConflict):
            await view_store.save("owners", tenant, "k", {"owner": "b"}, 1, 0)
        loaded = await view_store.load("owners", tenant, "k")
        assert loaded is not None
        assert (loaded.version, loaded.doc) == (1, {"owner": "a"})

    async def test_save_expecting_a_version_of_a_missing_document_conflicts(
        self, view_store: ViewStore
    ) -> None:
        tenant = new_tenant()
        with pytest.raises(ViewConflict):
            await view_store.save("owners", tenant, "k", {"owner": "a"}, 2, 1)
        assert await view_store.load("owners", tenant, "k") is None
        assert await view_store.count("owners", tenant) == 0

    async def test_documents_are_separate_per_view_tenant_and_key(
        self, view_store: ViewStore
    ) -> None:
        t1, t2 = new_tenant(), new_tenant()
        await view_store.save("v1", t1, "k", {"n": 1}, 1, 0)
        await view_store.save("v1", t2, "k", {"n": 2}, 1, 0)  # same key, other tenant
        await view_store.save("v2", t1, "k", {"n": 3}, 1, 0)  # same key, other view
        await view_store.save("v1", t1, "k2", {"n": 4}, 1, 0)
        await view_store.save("v1", t1, "k", {"n": 5}, 2, 1)
        got = [
            await view_store.load(v, t, k)
            for v, t, k in (
                ("v1", t1, "k"),
                ("v1", t2, "k"),
                ("v2", t1, "k"),
                ("v1", t1, "k2"),
            )
        ]
        assert [(d.version, d.doc["n"]) if d else None for d in got] == [
            (2, 5),
            (1, 2),
            (1, 3),
            (1, 4),
        ]

    async def test_concurrent_compare_and_set_never_loses_an_update(self) -> None:
        n = 20
        stores = [await self.open_view_store() for _ in range(n)]
        tenant = new_tenant()
        conflicts = 0

        async def increment(store: ViewStore, who: int) -> None:
            nonlocal conflicts
            while True:
                current = await store.load("counters", tenant, "c")
                version = current.version if current else 0
                doc: dict[str, Any] = dict(current.doc) if current else {"counter": 0, "by": []}
                doc["counter"] += 1
                doc["by"] = [*doc["by"], who]
                try:
                    await store.save("counters", tenant, "c", doc, version + 1, version)
                    return
                except ViewConflict:
                    conflicts += 1

        async with asyncio.timeout(CONCURRENCY_TIMEOUT_S):
            await asyncio.gather(*(increment(s, i) for i, s in enumerate(stores)))

        final = await stores[0].load("counters", tenant, "c")
        assert final is not None
        assert final.version == n
        assert final.doc["counter"] == n
        assert sorted(final.doc["by"]) == list(range(n))

    async def test_find_matches_a_top_level_field(self, view_store: ViewStore) -> None:
        tenant, other = new_tenant(), new_tenant()
        await view_store.save("owners", tenant, "c1", {"owner": "ann", "tier": 1}, 1, 0)
        await view_store.save("owners", tenant, "c2", {"owner": "bob", "tier": 2}, 1, 0)
        await view_store.save("owners", tenant, "c3", {"owner": "ann", "tier": 2}, 1, 0)
        await view_store.save("owners", tenant, "c4", {"tier": "1", "x": {"owner": "ann"}}, 1, 0)
        await view_store.save("owners", other, "c5", {"owner": "ann"}, 1, 0)
        await view_store.save("queues", tenant, "c6", {"owner": "ann"}, 1, 0)

        async def keys(field_name: str, value: Any, limit: int = 1000) -> list[str]:
            found = await view_store.find("owners", tenant, field_name, value, limit=limit)
            return sorted(d.key for d in found)

        assert await keys("owner", "ann") == ["c1", "c3"]
        assert await keys("owner", "bob") == ["c2"]
        assert await keys("owner", "nobody") == []
        assert await keys("tier", 2) == ["c2", "c3"]
        assert await keys("tier", 1) == ["c1"]  # not the string "1"
        assert await keys("tier", "1") == ["c4"]
        assert await keys("missing", "ann") == []
        assert len(await keys("owner", "ann", limit=1)) == 1
        found = await view_store.find("owners", tenant, "owner", "bob")
        assert [(d.key, d.version, d.doc) for d in found] == [
            ("c2", 1, {"owner": "bob", "tier": 2})
        ]

    async def test_find_does_not_confuse_booleans_and_numbers(self, view_store: ViewStore) -> None:
        tenant = new_tenant()
        await view_store.save("flags", tenant, "bool", {"on": True}, 1, 0)
        await view_store.save("flags", tenant, "int", {"on": 1}, 1, 0)
        await view_store.save("flags", tenant, "float", {"on": 1.0}, 1, 0)
        await view_store.save("flags", tenant, "false", {"on": False}, 1, 0)
        await view_store.save("flags", tenant, "zero", {"on": 0}, 1, 0)

        async def keys(value: Any) -> list[str]:
            return sorted(d.key for d in await view_store.find("flags", tenant, "on", value))

        assert await keys(True) == ["bool"]
        assert await keys(False) == ["false"]
        assert await keys(1) == ["float", "int"]
        assert await keys(0) == ["zero"]

    async def test_count_per_tenant_and_in_total(self, view_store: ViewStore) -> None:
        t1, t2 = new_tenant(), new_tenant()
        assert await view_store.count("owners") == 0
        for i in range(3):
            await view_store.save("owners", t1, f"k{i}", {"i": i}, 1, 0)
        for i in range(2):
            await view_store.save("owners", t2, f"k{i}", {"i": i}, 1, 0)
        await view_store.save("queues", t1, "k0", {}, 1, 0)
        await view_store.save("owners", t1, "k0", {"i": 9}, 2, 1)  # an update adds nothing
        assert await view_store.count("owners", t1) == 3
        assert await view_store.count("owners", t2) == 2
        assert await view_store.count("owners", new_tenant()) == 0
        assert await view_store.count("owners") == 5
        assert await view_store.count("queues") == 1

    async def test_drop_deletes_one_view_for_every_tenant(self, view_store: ViewStore) -> None:
        t1, t2 = new_tenant(), new_tenant()
        await view_store.save("owners", t1, "k", {"a": 1}, 1, 0)
        await view_store.save("owners", t2, "k", {"a": 2}, 1, 0)
        await view_store.save("queues", t1, "k", {"a": 3}, 1, 0)
        await view_store.drop("owners")
        assert await view_store.count("owners") == 0
        assert await view_store.load("owners", t1, "k") is None
        assert await view_store.load("owners", t2, "k") is None
        kept = await view_store.load("queues", t1, "k")
        assert kept is not None
        assert kept.doc == {"a": 3}
        await view_store.drop("owners")  # dropping an empty view is fine
        # A rebuild starts from version 0 again.
        await view_store.save("owners", t1, "k", {"a": 4}, 1, 0)
        assert await view_store.count("owners") == 1

    # ------------------------------------------------------------------ parking

    @staticmethod
    def parked_message(
        consumer: str = "followup",
        event_id: str | None = None,
        attempts: int = 5,
        error: str = "boom",
        parked_at: datetime | None = None,
    ) -> ParkedMessage:
        # Whole milliseconds: some databases keep no finer time.
        at = parked_at or datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
        return ParkedMessage(
            consumer=consumer,
            event_id=event_id or str(uuid4()),
            tenant_id=new_tenant(),
            stream=new_stream(),
            version=7,
            subject="baton.events.customer",
            attempts=attempts,
            error=error,
            parked_at=at,
        )

    async def test_park_keeps_every_field(self, view_store: ViewStore) -> None:
        message = self.parked_message(error="Traceback…\nValueError: é")
        await view_store.park(message)
        [got] = await view_store.parked()
        assert got == message
        assert got.parked_at.utcoffset() is not None

    async def test_parking_twice_keeps_one_record_with_the_latest_attempts(
        self, view_store: ViewStore
    ) -> None:
        first = self.parked_message(attempts=5, error="first")
        await view_store.park(first)
        later = ParkedMessage(
            consumer=first.consumer,
            event_id=first.event_id,
            tenant_id=first.tenant_id,
            stream=first.stream,
            version=first.version,
            subject=first.subject,
            attempts=9,
            error="second",
            parked_at=first.parked_at + timedelta(minutes=1),
        )
        await view_store.park(later)
        got = await view_store.parked(first.consumer)
        assert len(got) == 1
        assert (got[0].event_id, got[0].attempts, got[0].error) == (first.event_id, 9, "second")
        # The same event parked by another consumer is another record.
        other = self.parked_message(consumer="routing", event_id=first.event_id)
        await view_store.park(other)
        assert len(await view_store.parked()) == 2

    async def test_parked_is_oldest_first_and_filters_by_consumer(
        self, view_store: ViewStore
    ) -> None:
        t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
        a2 = self.parked_message("followup", parked_at=t0 + timedelta(seconds=2))
        b1 = self.parked_message("routing", parked_at=t0 + timedelta(seconds=1))
        a3 = self.parked_message("followup", parked_at=t0 + timedelta(seconds=3))
        a0 = self.parked_message("followup", parked_at=t0)
        for m in (a2, b1, a3, a0):  # parked out of time order
            await view_store.park(m)
        assert [m.event_id for m in await view_store.parked()] == [
            a0.event_id,
            b1.event_id,
            a2.event_id,
            a3.event_id,
        ]
        assert [m.event_id for m in await view_store.parked("followup")] == [
            a0.event_id,
            a2.event_id,
            a3.event_id,
        ]
        assert [m.event_id for m in await view_store.parked("routing")] == [b1.event_id]
        assert await view_store.parked("intake") == []
        assert [m.event_id for m in await view_store.parked(limit=2)] == [
            a0.event_id,
            b1.event_id,
        ]
        assert [m.event_id for m in await view_store.parked("followup", limit=1)] == [a0.event_id]

    async def test_unpark_forgets_one_message(self, view_store: ViewStore) -> None:
        keep = self.parked_message("followup")
        gone = self.parked_message("followup")
        same_event_other_consumer = self.parked_message("routing", event_id=gone.event_id)
        for m in (keep, gone, same_event_other_consumer):
            await view_store.park(m)
        await view_store.unpark("followup", gone.event_id)
        assert {(m.consumer, m.event_id) for m in await view_store.parked()} == {
            ("followup", keep.event_id),
            ("routing", gone.event_id),
        }
        await view_store.unpark("followup", gone.event_id)  # again: no error
        await view_store.unpark("nobody", str(uuid4()))
        assert len(await view_store.parked()) == 2

    async def test_views_and_parking_share_a_database_across_store_objects(
        self, view_store: ViewStore
    ) -> None:
        other = await self.open_view_store()
        tenant = new_tenant()
        await view_store.save("owners", tenant, "k", {"owner": "ann"}, 1, 0)
        with pytest.raises(ViewConflict):
            await other.save("owners", tenant, "k", {"owner": "bob"}, 1, 0)
        loaded = await other.load("owners", tenant, "k")
        assert loaded is not None
        assert loaded.doc == {"owner": "ann"}
        message = self.parked_message()
        await other.park(message)
        assert [m.event_id for m in await view_store.parked()] == [message.event_id]

    async def test_ping(self, view_store: ViewStore) -> None:
        await view_store.ping()
