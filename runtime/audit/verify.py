"""Verify hash chains: recompute every link and name the first event where a chain breaks.

``verify_stream`` is pure: it takes one stream's records as stored (``RecordedEvent``
or anything with the same fields, e.g. the lines of an export bundle), in the order the
store returns them (by version), and says whether the chain holds or where and how it
breaks first:

``changed``
    The event's stored hash differs from the hash recomputed from its stored fields:
    its bytes (payload, metadata) or its type, id or version were altered.
``removed``
    A version is missing (a gap, or version 1 absent), or the event's ``previous_hash``
    matches no event of the stream: an event before it was deleted (and possibly the
    versions renumbered), or its link was edited.
``reordered``
    Versions are out of order or repeat, or the event's ``previous_hash`` is the hash of
    an event stored *after* it: events were swapped or moved.

A chain is only as trustworthy as its head: someone able to rewrite the store can
recompute every hash after a change, and deleting the newest events leaves a shorter
chain that verifies. Compare the head hash with one kept elsewhere (an export bundle's
last line, ``expected_head``) to detect both.

``verify_store`` checks a whole store in one pass over ``read_all`` (position order,
grouped by tenant and stream, with only each stream's last link in memory) and
re-verifies a stream through ``read_stream`` to classify its break precisely.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from runtime.audit.chain import GENESIS_HASH, event_hash
from runtime.store.port import EventStore

BreakKind = Literal["changed", "removed", "reordered"]


class ChainRecord(Protocol):
    """The stored fields the verifier needs (``RecordedEvent`` has them all)."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def stream(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def event_id(self) -> UUID: ...

    @property
    def event_type(self) -> str: ...

    @property
    def schema_version(self) -> int: ...

    @property
    def data(self) -> bytes: ...

    @property
    def metadata(self) -> bytes: ...

    @property
    def hash(self) -> str: ...

    @property
    def previous_hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first event at which a chain does not hold, and how."""

    kind: BreakKind
    version: int
    event_id: str
    event_type: str
    detail: str

    def describe(self) -> str:
        """One line naming the event and what is wrong."""
        return f"{self.kind}: version {self.version}, event {self.event_id} ({self.event_type}): {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "kind": self.kind,
            "version": self.version,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verdict on one stream."""

    tenant_id: str
    stream: str
    events: int
    head_version: int
    head_hash: str
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        """True when every link holds."""
        return self.broken is None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "tenant_id": self.tenant_id,
            "stream": self.stream,
            "status": "ok" if self.ok else "broken",
            "events": self.events,
            "head_version": self.head_version,
            "head_hash": self.head_hash,
            "broken": self.broken.as_dict() if self.broken else None,
        }


def recompute(record: ChainRecord) -> str:
    """The hash the record's stored fields give, chained to its stored ``previous_hash``."""
    try:
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
    except ValueError:  # a previous_hash that is not 64 hex characters
        return ""


def _break(kind: BreakKind, record: ChainRecord, detail: str) -> ChainBreak:
    return ChainBreak(kind, record.version, str(record.event_id), record.event_type, detail)


def first_break(records: Sequence[ChainRecord]) -> ChainBreak | None:
    """The first place where ``records`` (one stream, in stored order) do not chain."""
    later_hashes = {r.hash: i for i, r in enumerate(records)}
    previous_hash, expected = GENESIS_HASH, 1
    for index, record in enumerate(records):
        if record.version < expected:
            return _break(
                "reordered",
                record,
                f"version {record.version} comes after version {expected - 1}: events are out of order",
            )
        if record.version > expected and any(r.version == expected for r in records[index + 1 :]):
            return _break(
                "reordered",
                record,
                f"version {record.version} comes before version {expected}: events are out of order",
            )
        if record.version > expected:
            missing = (
                f"version {expected}"
                if record.version == expected + 1
                else (f"versions {expected}-{record.version - 1}")
            )
            return _break("removed", record, f"{missing} missing before it")
        if record.previous_hash != previous_hash:
            pointed = later_hashes.get(record.previous_hash)
            if pointed is not None and pointed > index:
                target = records[pointed]
                return _break(
                    "reordered",
                    record,
                    f"it chains to version {target.version} ({target.event_id}), stored after it: events were swapped",
                )
            before = "the genesis hash" if expected == 1 else f"the hash of version {expected - 1}"
            return _break(
                "removed",
                record,
                f"its previous_hash is not {before}: an event before it was removed or its link edited",
            )
        if recompute(record) != record.hash:
            return _break("changed", record, "its stored hash does not match its stored bytes and fields")
        previous_hash, expected = record.hash, expected + 1
    return None


def verify_stream(
    records: Sequence[ChainRecord],
    tenant_id: str = "",
    stream: str = "",
    expected_head: str | None = None,
) -> ChainReport:
    """Verify one stream's chain; with ``expected_head``, also that the chain contains
    that hash (kept from an earlier export: events may have been appended since, but
    none of those the earlier head covered may have been removed or rewritten)."""
    if records:
        tenant_id, stream = records[0].tenant_id, records[0].stream
    head = records[-1] if records else None
    broken = first_break(records)
    if broken is None and expected_head is not None and expected_head not in {r.hash for r in records}:
        last = records[-1] if records else None
        broken = ChainBreak(
            "removed",
            last.version if last else 0,
            str(last.event_id) if last else "",
            last.event_type if last else "",
            f"the expected head {expected_head} is not in the chain: events it covered were removed or rewritten",
        )
    return ChainReport(
        tenant_id=tenant_id,
        stream=stream,
        events=len(records),
        head_version=head.version if head else 0,
        head_hash=head.hash if head else GENESIS_HASH,
        broken=broken,
    )


async def verify_stored_stream(
    store: EventStore, tenant_id: str, stream: str, expected_head: str | None = None
) -> ChainReport:
    """Read one stream from ``store`` and verify it."""
    return verify_stream(await store.read_stream(tenant_id, stream), tenant_id, stream, expected_head)


@dataclass
class StoreReport:
    """The verdict on a whole store."""

    events: int = 0
    streams: int = 0
    broken: list[ChainReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every stream's chain holds."""
        return not self.broken


@dataclass
class _Tail:
    version: int
    hash: str
    suspect: bool = False


Progress = Callable[[int, int], Awaitable[None] | None]
"""Called after each page with (events read so far, streams seen so far)."""


async def verify_store(store: EventStore, page: int = 1000, progress: Progress | None = None) -> StoreReport:
    """Verify every stream of ``store``.

    One pass over ``read_all`` in position order, keeping per stream only its last
    version and hash (within a stream, positions grow with versions). A stream whose
    next event does not link is re-read with ``read_stream`` (version order) and
    verified by ``verify_stream``, which names the first broken event and how.
    """
    report = StoreReport()
    tails: dict[tuple[str, str], _Tail] = {}
    after = 0
    while batch := await store.read_all(after_position=after, limit=page):
        for record in batch:
            key = (record.tenant_id, record.stream)
            tail = tails.get(key)
            if tail is None:
                tail = tails[key] = _Tail(0, GENESIS_HASH)
            if tail.suspect:
                continue
            if (
                record.version != tail.version + 1
                or record.previous_hash != tail.hash
                or recompute(record) != record.hash
            ):
                tail.suspect = True
                continue
            tail.version, tail.hash = record.version, record.hash
        report.events += len(batch)
        after = batch[-1].position
        if progress is not None:
            result = progress(report.events, len(tails))
            if result is not None:
                await result
    report.streams = len(tails)
    for (tenant_id, stream), tail in tails.items():
        if tail.suspect:
            checked = await verify_stored_stream(store, tenant_id, stream)
            if not checked.ok:
                report.broken.append(checked)
    return report
