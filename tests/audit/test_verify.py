"""The verifier, on records built in memory: each kind of break is named at the right event."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from runtime.audit.chain import GENESIS_HASH, chain_links, event_hash
from runtime.audit.verify import first_break, verify_store, verify_stream
from runtime.store.port import NewEvent, RecordedEvent
from runtime.store.sqlite import SqliteEventStore

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def stream_of(n: int, tenant: str = "t", stream: str = "customer:c") -> list[RecordedEvent]:
    events = [NewEvent(uuid4(), f"E{i}", 1, f'{{"i":{i}}}'.encode(), b"{}") for i in range(1, n + 1)]
    links = chain_links(tenant, stream, 1, GENESIS_HASH, events)
    return [
        RecordedEvent(
            tenant_id=tenant,
            stream=stream,
            version=link.version,
            position=100 + link.version,
            event_id=e.event_id,
            event_type=e.event_type,
            schema_version=1,
            data=e.data,
            metadata=e.metadata,
            recorded_at=NOW,
            hash=link.hash,
            previous_hash=link.previous_hash,
        )
        for e, link in zip(events, links, strict=True)
    ]


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    records = stream_of(5)
    report = verify_stream(records)
    assert report.ok and report.broken is None
    assert (report.tenant_id, report.stream, report.events) == ("t", "customer:c", 5)
    assert (report.head_version, report.head_hash) == (5, records[-1].hash)
    assert report.as_dict()["status"] == "ok"


def test_an_empty_stream_verifies_at_genesis() -> None:
    report = verify_stream([], "t", "s")
    assert report.ok and report.head_hash == GENESIS_HASH and report.head_version == 0


@pytest.mark.parametrize(
    "change",
    [
        {"data": b'{"i":3} '},
        {"metadata": b'{"actor":"someone else"}'},
        {"event_type": "Other"},
        {"schema_version": 2},
        {"event_id": uuid4()},
        {"hash": "f" * 64},
    ],
)
def test_a_changed_event_is_named(change: dict[str, object]) -> None:
    records = stream_of(5)
    records[2] = replace(records[2], **change)  # type: ignore[arg-type]
    broken = first_break(records)
    assert broken is not None
    assert (broken.kind, broken.version, broken.event_id) == ("changed", 3, str(records[2].event_id))
    assert "changed" in broken.describe() and "version 3" in broken.describe()


def test_a_deleted_event_is_reported_at_the_gap() -> None:
    records = stream_of(5)
    del records[2]
    broken = first_break(records)
    assert broken is not None
    assert (broken.kind, broken.version, broken.event_type) == ("removed", 4, "E4")
    assert "version 3 missing" in broken.detail


def test_a_deleted_first_event_is_reported() -> None:
    broken = first_break(stream_of(3)[1:])
    assert broken is not None and (broken.kind, broken.version) == ("removed", 2)


def test_a_deletion_hidden_by_renumbering_is_reported_by_the_broken_link() -> None:
    records = stream_of(5)
    del records[2]
    records[2:] = [replace(r, version=r.version - 1) for r in records[2:]]
    broken = first_break(records)
    assert broken is not None
    assert (broken.kind, broken.version, broken.event_type) == ("removed", 3, "E4")
    assert "previous_hash" in broken.detail


def test_swapped_versions_are_reported_as_reordered() -> None:
    records = stream_of(5)
    # Swap the version numbers of events 3 and 4, then read back in version order.
    e3, e4 = replace(records[2], version=4), replace(records[3], version=3)
    records[2], records[3] = e4, e3
    broken = first_break(records)
    assert broken is not None
    assert (broken.kind, broken.version, broken.event_id, broken.event_type) == (
        "reordered",
        3,
        str(e4.event_id),
        "E4",
    )
    assert f"chains to version 4 ({e3.event_id})" in broken.detail


def test_records_out_of_version_order_are_reported_as_reordered() -> None:
    records = stream_of(4)
    records[1], records[2] = records[2], records[1]
    broken = first_break(records)
    assert broken is not None
    assert (broken.kind, broken.version, broken.event_type) == ("reordered", 3, "E3")
    assert "comes before version 2" in broken.detail
    shuffled = [records[0], records[2], records[2]]
    again = first_break(shuffled)
    assert again is not None and again.kind == "reordered"


def test_an_expected_head_must_be_in_the_chain() -> None:
    records = stream_of(5)
    assert verify_stream(records, expected_head=records[2].hash).ok  # appended since: fine
    truncated = verify_stream(records[:3], expected_head=records[4].hash)
    assert not truncated.ok and truncated.broken is not None
    assert truncated.broken.kind == "removed" and "expected head" in truncated.broken.detail


def test_a_rewritten_chain_verifies_alone_but_not_against_a_kept_head() -> None:
    records = stream_of(3)
    kept_head = records[-1].hash
    forged = [replace(records[0], data=b'{"i":"forged"}')]
    forged[0] = replace(
        forged[0],
        hash=event_hash(
            previous_hash=GENESIS_HASH,
            tenant_id="t",
            stream="customer:c",
            version=1,
            event_id=forged[0].event_id,
            event_type=forged[0].event_type,
            schema_version=1,
            data=forged[0].data,
            metadata=forged[0].metadata,
        ),
    )
    previous = forged[0].hash
    for record in records[1:]:
        digest = event_hash(
            previous_hash=previous,
            tenant_id="t",
            stream="customer:c",
            version=record.version,
            event_id=record.event_id,
            event_type=record.event_type,
            schema_version=1,
            data=record.data,
            metadata=record.metadata,
        )
        forged.append(replace(record, previous_hash=previous, hash=digest))
        previous = digest
    assert verify_stream(forged).ok
    assert not verify_stream(forged, expected_head=kept_head).ok


async def test_verify_store_checks_every_stream_and_classifies_breaks(tmp_path: object) -> None:
    from pathlib import Path

    from tests.store.contract import new_events

    store = await SqliteEventStore.open(Path(str(tmp_path)) / "baton.db")
    try:
        for i in range(6):
            for _ in range(3):  # interleave streams in position order
                version = await store.stream_version("t", f"s{i}")
                await store.append("t", f"s{i}", version, new_events(2))
        seen: list[tuple[int, int]] = []
        report = await verify_store(store, page=5, progress=lambda e, s: seen.append((e, s)) and None)
        assert report.ok and (report.events, report.streams) == (36, 6)
        assert seen[-1] == (36, 6) and len(seen) == 8

        def swap(conn: object) -> None:
            import sqlite3

            assert isinstance(conn, sqlite3.Connection)
            conn.execute("UPDATE events SET version = -1 WHERE stream = 's2' AND version = 2")
            conn.execute("UPDATE events SET version = 2 WHERE stream = 's2' AND version = 3")
            conn.execute("UPDATE events SET version = 3 WHERE stream = 's2' AND version = -1")
            conn.execute("UPDATE events SET data = x'00' WHERE stream = 's4' AND version = 5")

        await store._run(swap)
        report = await verify_store(store, page=7)
        assert not report.ok and report.streams == 6
        kinds = {(r.stream, r.broken.kind, r.broken.version) for r in report.broken if r.broken}
        assert kinds == {("s2", "reordered", 2), ("s4", "changed", 5)}
    finally:
        await store.close()


async def test_the_verifier_works_on_the_mongodb_adapter_too() -> None:
    from runtime.store.mongodb import MongoEventStore
    from tests.store.contract import new_events
    from tests.store.mongomock_async import AsyncMockDatabase

    db = AsyncMockDatabase.fresh(f"baton_{uuid4().hex}")
    store = MongoEventStore(db)
    for i in range(3):
        await store.append("t", f"s{i}", 0, new_events(2))
        await store.append("t", f"s{i}", 2, new_events(3))
    report = await verify_store(store)
    assert report.ok and (report.events, report.streams) == (15, 3)

    commit = await db["commits"].find_one({"stream": "s1", "versions": 4})
    events = commit["events"]
    events[1]["data"] = b"tampered"  # version 4, stored inside the second commit
    await db["commits"].update_one({"_id": commit["_id"]}, {"$set": {"events": events}})
    report = await verify_store(store)
    assert [(r.stream, r.broken.kind, r.broken.version) for r in report.broken if r.broken] == [("s1", "changed", 4)]
