"""MongoDB adapter of the event-store port (Baton's production store).

Used through PyMongo's async API (``pymongo.AsyncMongoClient``); this is the only module
in the project that imports ``pymongo``. It needs no multi-document transactions, so it
runs on a replica set or a sharded cluster alike (tests also run it on mongomock).

Collections (every one obtained with write concern ``majority`` + journal and read
concern ``majority``, explicitly):

``commits``
    One document per append ("commit"): ``tenant_id``, ``stream``, ``versions``
    ``[v1..vn]``, ``positions`` ``[p1..pn]``, ``first_position``, ``events`` (each with
    ``event_id``, ``event_type``, ``schema_version``, ``data``, ``metadata`` as BSON
    binary, ``version``, ``position``, ``hash``, ``previous_hash``), ``recorded_at`` (a
    BSON date), and while some of its events are unpublished ``pending: true`` with
    their ids in ``unpublished``. A single-document insert is atomic, so an append is
    all or nothing.

    Hash chain: each event's ``hash`` chains to the previous event of its stream
    (``runtime.audit.chain``). The previous hash is the last event of the stream's head
    commit, read together with the stream version before the insert; if another commit
    lands in between, the insert fails on the ``stream_versions`` index (it covers the
    same version) and the append re-reads the head, so a stream's chain stays linear.

    A *tombstone* is a document ``{positions: [p], tombstone: true, recorded_at}``: it
    fills a global position that a writer allocated but never committed (see
    ``read_all``). Its stream fields and ``events`` are absent, not empty, so the sparse
    unique indexes below leave it out. Tombstones are never returned.
``counters``
    ``{_id: "position", value: n}``: the last allocated global position.
``views`` / ``parked``
    The ``MongoViewStore`` documents.
``deadlines``
    The ``MongoDeadlineStore`` documents.

Indexes (``ensure_indexes``; all created explicitly, idempotent):

- ``stream_versions`` UNIQUE sparse on ``(tenant_id, stream, versions)``: multikey, so
  it holds one key per (stream, version) and no two commits can cover the same version
  (a unique index on "the version before the commit" would not stop a 3-event commit at
  1..3 and a 1-event commit at 2). Sparse keeps tombstones out.
- ``event_ids`` UNIQUE sparse on ``events.event_id``: an event id exists once in the
  whole store. (Uniqueness is enforced across documents only; ``append`` rejects a batch
  that repeats an id itself.)
- ``positions`` UNIQUE on ``positions``: one commit or tombstone per global position.
- ``outbox`` on ``first_position``, partial on ``pending: true``: the unpublished commits.

Global order without skipping (the "high-water mark" problem): an append takes
positions from the counter (``$inc`` by n) and then inserts its commit; a slower writer
may insert positions lower than ones already visible. ``read_all`` therefore returns
only the contiguous run of positions after ``after_position``. At a gap it waits up to
``gap_timeout`` for the missing position; if it is still missing, it inserts a
tombstone there. The late writer's insert then fails on the ``positions`` index and it
retries with fresh positions (re-checking the stream version first), so a reader sees
either the commit or the tombstone and never passes an event that appears later. A
writer whose insert fails tombstones its own positions at once, so readers only wait
for writers that die or stall between allocating and inserting.

Indexes are created lazily, once per store object, before its first operation; call
``ensure_indexes()`` at start-up to fail fast instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, Self
from uuid import UUID

from bson import Binary
from bson.binary import UuidRepresentation
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from runtime.audit.chain import GENESIS_HASH, chain_links
from runtime.store.port import (
    AppendResult,
    Deadline,
    DeadlineStore,
    DuplicateEventId,
    EventStore,
    NewEvent,
    ParkedMessage,
    RecordedEvent,
    StoreError,
    ViewConflict,
    ViewDoc,
    ViewStore,
    WrongExpectedVersion,
)

__all__ = ["MongoDeadlineStore", "MongoEventStore", "MongoViewStore"]

WRITE_CONCERN = WriteConcern(w="majority", j=True)
"""Acknowledged only once a majority of the replica set has it in its journal."""
READ_CONCERN = ReadConcern("majority")
"""Read only what a majority has: nothing a failover can roll back."""

_COMMITS = "commits"
_COUNTERS = "counters"
_VIEWS = "views"
_PARKED = "parked"
_DEADLINES = "deadlines"
_POSITION_COUNTER = "position"

_IDX_STREAM = "stream_versions"
_IDX_EVENT_IDS = "event_ids"
_IDX_POSITIONS = "positions"
_IDX_OUTBOX = "outbox"

_DUPLICATE_KEY = 11000
_INDEX_CONFLICTS = frozenset({85, 86})  # IndexOptionsConflict, IndexKeySpecsConflict
_INDEX_IN_ERRMSG = re.compile(r"index: (\S+) dup key")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _to_bson_time(moment: datetime) -> datetime:
    """UTC, truncated to the millisecond a BSON date keeps. Naive datetimes are refused
    (as by the SQLite adapter): their meaning depends on the machine."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment!r}")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _from_bson_time(value: datetime) -> datetime:
    """A tz-aware UTC datetime, whatever codec options the database was opened with."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _uuid_bin(value: UUID) -> Binary:
    return Binary.from_uuid(value)


def _as_uuid(value: Any) -> UUID:
    """An event id as read back: a UUID with standard UUID decoding, else BSON binary."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, Binary):
        return value.as_uuid()
    return UUID(bytes=bytes(value))


def _collection(database: AsyncDatabase[Any], name: str) -> AsyncCollection[Any]:
    """A collection with explicit durability and codec settings (never server defaults)."""
    codec = database.codec_options.with_options(
        tz_aware=True, tzinfo=UTC, uuid_representation=UuidRepresentation.STANDARD
    )
    return database.get_collection(name).with_options(
        codec_options=codec, write_concern=WRITE_CONCERN, read_concern=READ_CONCERN
    )


def _new_client(uri: str, **options: Any) -> AsyncMongoClient[Any]:
    settings: dict[str, Any] = {
        "tz_aware": True,
        "tzinfo": UTC,
        "uuidRepresentation": "standard",
        "w": "majority",
        "journal": True,
        "readConcernLevel": "majority",
        "appname": "baton",
    }
    settings.update(options)
    return AsyncMongoClient(uri, **settings)


async def _create_indexes(collection: AsyncCollection[Any], indexes: list[IndexModel]) -> None:
    """``create_indexes``, retried a few times: many store objects may create the same
    indexes at once on a new collection. A real option conflict (an index of that name
    with other keys or options) is raised at once: it needs an operator."""
    for attempt in range(5):
        try:
            await collection.create_indexes(indexes)
            return
        except OperationFailure as exc:
            if exc.code in _INDEX_CONFLICTS or attempt == 4:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))


def _dup_key_index(exc: DuplicateKeyError) -> str | None:
    """Which of our unique indexes a duplicate-key error names, if it can be told."""
    details = exc.details or {}
    pattern = details.get("keyPattern")
    if isinstance(pattern, Mapping):
        fields = set(pattern)
        if "versions" in fields:
            return _IDX_STREAM
        if "positions" in fields:
            return _IDX_POSITIONS
        if "events.event_id" in fields:
            return _IDX_EVENT_IDS
    match = _INDEX_IN_ERRMSG.search(str(details.get("errmsg") or exc))
    return match.group(1) if match else None


def _only_duplicate_keys(exc: BulkWriteError) -> bool:
    details = exc.details or {}
    errors = details.get("writeErrors") or []
    return (
        bool(errors) and all(e.get("code") == _DUPLICATE_KEY for e in errors) and not details.get("writeConcernErrors")
    )


class _Lazy:
    """Runs an async initialiser once, on first use, even under concurrent callers."""

    def __init__(self, init: Callable[[], Awaitable[None]]) -> None:
        self._init = init
        self._done = False
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        if self._done:
            return
        async with self._lock:
            if not self._done:
                await self._init()
                self._done = True


class _MongoStore:
    """What every MongoDB store shares: its database, the client it may own (``from_uri``),
    indexes created lazily before the first operation, ``ping`` and ``close``."""

    def __init__(self, database: AsyncDatabase[Any]) -> None:
        self._db = database
        self._client: AsyncMongoClient[Any] | None = None
        self._ready = _Lazy(self.ensure_indexes)

    async def ensure_indexes(self) -> None:
        """Create every index this store relies on (idempotent)."""
        raise NotImplementedError

    def _owning(self, client: AsyncMongoClient[Any]) -> Self:
        self._client = client
        return self

    async def ping(self) -> None:
        """Raise if the server does not answer a ``ping`` command."""
        await self._db.command("ping")

    async def close(self) -> None:
        """Close the client if this store created it (``from_uri``); otherwise nothing."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class MongoEventStore(_MongoStore, EventStore):
    """The event store on MongoDB: one document per append, no transactions needed.

    ``database`` is a ``pymongo.asynchronous.database.AsyncDatabase`` (or anything with
    the same interface); several store objects may share it. ``clock`` stamps
    ``recorded_at`` (default: UTC now). ``gap_timeout`` is how long ``read_all`` waits
    for a position that was allocated but not yet committed before it tombstones it:
    keep it well above the worst latency of one majority-acknowledged insert (a writer
    slower than that is tombstoned and retries with new positions, at most
    ``max_append_attempts`` times). ``gap_poll_interval`` is how often it looks again
    meanwhile.

    Indexes are created lazily before the first operation of each store object (or
    explicitly with ``ensure_indexes``). ``close`` closes the client only if the store
    created it (``from_uri``).
    """

    def __init__(
        self,
        database: AsyncDatabase[Any],
        *,
        clock: Clock | None = None,
        gap_timeout: float = 2.0,
        gap_poll_interval: float = 0.005,
        max_append_attempts: int = 20,
    ) -> None:
        if gap_timeout < 0 or gap_poll_interval <= 0 or max_append_attempts < 1:
            raise ValueError("gap_timeout >= 0, gap_poll_interval > 0, max_append_attempts >= 1")
        super().__init__(database)
        self._clock: Clock = clock or _utc_now
        self._gap_timeout = gap_timeout
        self._gap_poll = gap_poll_interval
        self._max_attempts = max_append_attempts
        self._commits = _collection(database, _COMMITS)
        self._counters = _collection(database, _COUNTERS)

    @classmethod
    def from_uri(
        cls,
        uri: str,
        database: str,
        *,
        clock: Clock | None = None,
        gap_timeout: float = 2.0,
        **client_options: Any,
    ) -> Self:
        """A store on its own ``AsyncMongoClient`` (closed by ``close``).

        The client is created tz-aware with standard UUIDs, majority write concern with
        journal and majority read concern; ``client_options`` are passed on. No I/O
        happens here: indexes are created on first use (or by ``ensure_indexes``).
        """
        client = _new_client(uri, **client_options)
        return cls(client[database], clock=clock, gap_timeout=gap_timeout)._owning(client)

    async def ensure_indexes(self) -> None:
        """Create every index this store relies on (idempotent), and seed the counter.

        The counter is raised to the highest position stored, so a lost or restored
        ``counters`` collection can never hand out a position twice.
        """
        await _create_indexes(
            self._commits,
            [
                IndexModel(
                    [("tenant_id", ASCENDING), ("stream", ASCENDING), ("versions", ASCENDING)],
                    name=_IDX_STREAM,
                    unique=True,
                    sparse=True,
                ),
                IndexModel([("events.event_id", ASCENDING)], name=_IDX_EVENT_IDS, unique=True, sparse=True),
                IndexModel([("positions", ASCENDING)], name=_IDX_POSITIONS, unique=True),
                IndexModel(
                    [("first_position", ASCENDING)],
                    name=_IDX_OUTBOX,
                    partialFilterExpression={"pending": True},
                ),
            ],
        )
        last = await self._commits.find_one({}, projection={"_id": 0, "positions": 1}, sort=[("positions", DESCENDING)])
        highest = max(last["positions"]) if last else 0
        for attempt in range(2):
            try:
                await self._counters.update_one({"_id": _POSITION_COUNTER}, {"$max": {"value": highest}}, upsert=True)
                break
            except DuplicateKeyError:  # two first upserts raced; the other one created it
                if attempt:
                    raise

    # ------------------------------------------------------------------ append

    async def append(
        self,
        tenant_id: str,
        stream: str,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> AppendResult:
        """Append ``events`` as one commit document (see the module docstring)."""
        if not events:
            raise ValueError("append needs at least one event")
        if expected_version < 0:
            raise ValueError("expected_version must be >= 0")
        ids = [e.event_id for e in events]
        if len(set(ids)) != len(ids):
            raise DuplicateEventId(f"stream {tenant_id}/{stream}: an event id repeats in the batch")
        await self._ready()

        for _ in range(self._max_attempts):
            duplicate = await self._already_appended(tenant_id, stream, ids)
            if duplicate is not None:
                return duplicate
            actual, head_hash = await self._stream_head(tenant_id, stream)
            if actual != expected_version:
                raise WrongExpectedVersion(tenant_id, stream, expected_version, actual)

            positions = await self._allocate(len(events))
            commit = self._commit_document(tenant_id, stream, expected_version, head_hash, events, positions)
            try:
                await self._commits.insert_one(commit)
            except DuplicateKeyError as exc:
                # Nothing was written. Free our positions for readers, then find out why
                # on the next round: another commit took our versions (a conflict, or
                # this very append succeeding earlier), our ids exist, or a reader
                # tombstoned one of our positions because we were too slow (retry).
                await self._burn(positions)
                if _dup_key_index(exc) in (_IDX_STREAM, _IDX_EVENT_IDS):
                    await self._settle(tenant_id, stream, expected_version, ids)
                continue
            except (PyMongoError, OSError):
                # Unknown outcome: if the commit landed, tombstoning fails harmlessly on
                # the positions index; if it did not, readers need not wait for it. A
                # retry of the append by the caller is idempotent.
                with suppress(PyMongoError, OSError):
                    await self._burn(positions)
                raise
            return AppendResult(
                first_version=expected_version + 1,
                last_version=expected_version + len(events),
                positions=tuple(positions),
                duplicate=False,
                hashes=tuple(e["hash"] for e in commit["events"]),
            )
        raise StoreError(f"stream {tenant_id}/{stream}: append gave up after {self._max_attempts} attempts")

    def _commit_document(
        self,
        tenant_id: str,
        stream: str,
        expected_version: int,
        head_hash: str,
        events: Sequence[NewEvent],
        positions: Sequence[int],
    ) -> dict[str, Any]:
        versions = list(range(expected_version + 1, expected_version + len(events) + 1))
        ids = [_uuid_bin(e.event_id) for e in events]
        links = chain_links(tenant_id, stream, expected_version + 1, head_hash, events)
        return {
            "tenant_id": tenant_id,
            "stream": stream,
            "versions": versions,
            "positions": list(positions),
            "first_position": positions[0],
            "events": [
                {
                    "event_id": event_id,
                    "event_type": e.event_type,
                    "schema_version": e.schema_version,
                    "data": Binary(bytes(e.data)),
                    "metadata": Binary(bytes(e.metadata)),
                    "version": version,
                    "position": position,
                    "hash": link.hash,
                    "previous_hash": link.previous_hash,
                }
                for e, event_id, version, position, link in zip(events, ids, versions, positions, links, strict=True)
            ],
            "recorded_at": _to_bson_time(self._clock()),
            "pending": True,
            "unpublished": ids,
        }

    async def _already_appended(self, tenant_id: str, stream: str, ids: Sequence[UUID]) -> AppendResult | None:
        """None if no id exists; the earlier result if all do, in this stream, in order.

        Raises ``DuplicateEventId`` when only some exist, or they exist elsewhere.
        """
        found = await self._commits.find(
            {"events.event_id": {"$in": [_uuid_bin(i) for i in ids]}},
            projection={
                "_id": 0,
                "tenant_id": 1,
                "stream": 1,
                "events.event_id": 1,
                "events.version": 1,
                "events.position": 1,
                "events.hash": 1,
            },
        ).to_list(None)
        if not found:
            return None
        where: dict[UUID, tuple[str, str, int, int, str]] = {}
        for commit in found:
            for event in commit["events"]:
                where[_as_uuid(event["event_id"])] = (
                    commit["tenant_id"],
                    commit["stream"],
                    int(event["version"]),
                    int(event["position"]),
                    str(event.get("hash", "")),
                )
        located = [where.get(i) for i in ids]
        if all(loc is not None for loc in located):
            places = [loc for loc in located if loc is not None]
            versions = [loc[2] for loc in places]
            same_stream = all((loc[0], loc[1]) == (tenant_id, stream) for loc in places)
            in_order = versions == list(range(versions[0], versions[0] + len(versions)))
            if same_stream and in_order:
                return AppendResult(
                    first_version=versions[0],
                    last_version=versions[-1],
                    positions=tuple(loc[3] for loc in places),
                    duplicate=True,
                    hashes=tuple(loc[4] for loc in places),
                )
        raise DuplicateEventId(
            f"stream {tenant_id}/{stream}: {sum(loc is not None for loc in located)} of "
            f"{len(ids)} event ids already exist (in another stream, order or batch)"
        )

    async def _settle(self, tenant_id: str, stream: str, expected_version: int, ids: Sequence[UUID]) -> None:
        """After a duplicate key on versions or ids, wait (briefly) until the commit
        that caused it is visible at majority read concern, so the next round can say
        exactly what happened instead of retrying blindly."""
        for _ in range(200):
            if await self._stream_version(tenant_id, stream) != expected_version:
                return
            if await self._commits.find_one(
                {"events.event_id": {"$in": [_uuid_bin(i) for i in ids]}}, projection={"_id": 1}
            ):
                return
            await asyncio.sleep(self._gap_poll)

    async def _allocate(self, count: int) -> list[int]:
        counter = await self._counters.find_one_and_update(
            {"_id": _POSITION_COUNTER},
            {"$inc": {"value": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if counter is None:  # an upsert returning the document after: never None
            raise StoreError("the position counter did not answer")
        last = int(counter["value"])
        return list(range(last - count + 1, last + 1))

    async def _burn(self, positions: Sequence[int]) -> None:
        """Tombstone these positions (those already taken are left as they are)."""
        if not positions:
            return
        now = _to_bson_time(self._clock())
        try:
            await self._commits.insert_many(
                [{"positions": [p], "tombstone": True, "recorded_at": now} for p in positions],
                ordered=False,
            )
        except BulkWriteError as exc:
            if not _only_duplicate_keys(exc):
                raise

    # ------------------------------------------------------------------- reads

    async def read_stream(
        self,
        tenant_id: str,
        stream: str,
        after_version: int = 0,
        until_version: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Versions are gapless, so ``limit`` becomes a version bound and only the commits
        overlapping ``(after, until]`` are read, through the ``stream_versions`` index."""
        if limit is not None and limit <= 0:
            return []
        upper = until_version
        if limit is not None:
            upper = after_version + limit if upper is None else min(upper, after_version + limit)
        if upper is not None and upper <= after_version:
            return []
        await self._ready()
        bounds: dict[str, int] = {"$gt": after_version}
        if upper is not None:
            bounds["$lte"] = upper
        commits = await self._commits.find(
            {"tenant_id": tenant_id, "stream": stream, "versions": {"$elemMatch": bounds}}
        ).to_list(None)
        out = [
            self._recorded(commit, event)
            for commit in commits
            for event in commit["events"]
            if event["version"] > after_version and (upper is None or event["version"] <= upper)
        ]
        out.sort(key=lambda r: r.version)
        return out

    async def stream_version(self, tenant_id: str, stream: str) -> int:
        """The highest version: one index entry, read from the end of the stream's keys."""
        await self._ready()
        return await self._stream_version(tenant_id, stream)

    async def _stream_version(self, tenant_id: str, stream: str) -> int:
        head = await self._commits.find_one(
            {"tenant_id": tenant_id, "stream": stream},
            projection={"_id": 0, "versions": 1},
            sort=[("versions", DESCENDING)],
        )
        return max(head["versions"]) if head else 0

    async def _stream_head(self, tenant_id: str, stream: str) -> tuple[int, str]:
        """The stream's version and the hash of its last event (genesis when empty):
        one read of the head commit through the ``stream_versions`` index."""
        head = await self._commits.find_one(
            {"tenant_id": tenant_id, "stream": stream},
            projection={"_id": 0, "versions": 1, "events.version": 1, "events.hash": 1},
            sort=[("versions", DESCENDING)],
        )
        if not head:
            return 0, GENESIS_HASH
        last = max(head["events"], key=lambda e: int(e["version"]))
        if not last.get("hash"):
            raise StoreError(
                f"stream {tenant_id}/{stream}: its last event has no hash (written before the hash chain); "
                "chain the stream's existing events before appending to it"
            )
        return int(last["version"]), str(last["hash"])

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """The contiguous run of positions after ``after_position`` (never past a gap).

        At a gap that starts right after ``after_position`` it waits up to
        ``gap_timeout`` for the missing positions, then tombstones those that were
        already allocated when it began waiting, and goes on. A gap after some events
        ends the batch at once: the next call waits for it.
        """
        if limit <= 0:
            return []
        await self._ready()
        out: list[RecordedEvent] = []
        cursor = after_position  # every position <= cursor has been passed
        waiting_at: int | None = None
        deadline = 0.0
        allocated_then = 0
        loop = asyncio.get_running_loop()
        while len(out) < limit:
            window_end = cursor + (limit - len(out))
            commits = await self._commits.find(
                {"positions": {"$elemMatch": {"$gt": cursor, "$lte": window_end}}}
            ).to_list(None)
            slots: dict[int, tuple[Mapping[str, Any], int | None]] = {}
            for commit in commits:
                for i, position in enumerate(commit["positions"]):
                    if cursor < position <= window_end:
                        slots[position] = (commit, None if commit.get("tombstone") else i)
            position = cursor + 1
            while position in slots:
                commit, index = slots[position]
                if index is not None:
                    out.append(self._recorded(commit, commit["events"][index]))
                position += 1
            cursor = position - 1
            if position > window_end:
                continue  # the whole window was there: read on
            if out:
                return out  # a gap after some events: return them, the next call waits
            # A gap right at the start. Is the position allocated at all?
            later = [p for p in slots if p > position]
            allocated: int | None = None
            if not later:
                allocated = await self._allocated()
                if allocated < position:
                    return out  # the head of the log: nothing is missing
            now = loop.time()
            if waiting_at != position:
                # Positions allocated by now get the whole grace period from now on.
                waiting_at = position
                deadline = now + self._gap_timeout
                allocated_then = allocated if allocated is not None else await self._allocated()
            if now < deadline:
                await asyncio.sleep(self._gap_poll)
                continue
            gap_end = min(min(later) - 1 if later else allocated_then, allocated_then)
            await self._burn(range(position, gap_end + 1))
            # Each missing position now holds the late commit or a tombstone; re-read
            # after a pause, in case the commit is not yet visible at majority.
            await asyncio.sleep(self._gap_poll)
        return out

    async def _allocated(self) -> int:
        counter = await self._counters.find_one({"_id": _POSITION_COUNTER})
        return int(counter["value"]) if counter else 0

    def _recorded(self, commit: Mapping[str, Any], event: Mapping[str, Any]) -> RecordedEvent:
        return RecordedEvent(
            tenant_id=commit["tenant_id"],
            stream=commit["stream"],
            version=int(event["version"]),
            position=int(event["position"]),
            event_id=_as_uuid(event["event_id"]),
            event_type=event["event_type"],
            schema_version=int(event["schema_version"]),
            data=bytes(event["data"]),
            metadata=bytes(event["metadata"]),
            recorded_at=_from_bson_time(commit["recorded_at"]),
            # Commits written before the chain existed have no hashes: they read as
            # empty strings, which the verifier reports as a broken chain.
            hash=str(event.get("hash", "")),
            previous_hash=str(event.get("previous_hash", "")),
        )

    # ------------------------------------------------------------------ outbox

    async def unpublished(self, limit: int = 500) -> list[RecordedEvent]:
        """Unpublished events, oldest position first, through the partial ``outbox`` index."""
        if limit <= 0:
            return []
        await self._ready()
        commits = (
            await self._commits.find({"pending": True}).sort("first_position", ASCENDING).limit(limit).to_list(None)
        )
        out: list[RecordedEvent] = []
        emptied: list[Any] = []
        for commit in commits:
            waiting = {_as_uuid(i) for i in commit.get("unpublished") or []}
            if not waiting:
                emptied.append(commit["_id"])  # mark_published stopped half-way
                continue
            for event in commit["events"]:
                if _as_uuid(event["event_id"]) in waiting:
                    out.append(self._recorded(commit, event))
        if emptied:
            await self._commits.update_many(
                {"_id": {"$in": emptied}, "pending": True, "unpublished": {"$size": 0}},
                {"$unset": {"pending": ""}},
            )
        out.sort(key=lambda r: r.position)
        return out[:limit]

    async def mark_published(self, event_ids: Sequence[UUID]) -> None:
        """Pull the ids from their commits' ``unpublished`` lists; a commit leaves the
        outbox index when its list is empty. Idempotent; unknown ids are ignored."""
        if not event_ids:
            return
        await self._ready()
        ids = [_uuid_bin(i) for i in dict.fromkeys(event_ids)]
        await self._commits.update_many(
            {"events.event_id": {"$in": ids}, "pending": True},
            {"$pull": {"unpublished": {"$in": ids}}},
        )
        await self._commits.update_many(
            {"events.event_id": {"$in": ids}, "pending": True, "unpublished": {"$size": 0}},
            {"$unset": {"pending": ""}},
        )

    # -------------------------------------------------------------- lifecycle


class MongoViewStore(_MongoStore, ViewStore):
    """Services' views, checkpoints and parked messages on MongoDB.

    ``views`` holds ``{view, tenant_id, key, version, doc}`` with a unique index on
    ``(view, tenant_id, key)``; ``save`` is a compare-and-set on ``version`` (an insert
    when the expected version is 0). ``parked`` holds one document per
    ``(consumer, event_id)``. Constructor, ``from_uri``, lazy index creation and
    ``close`` behave as in ``MongoEventStore`` (``clock`` is accepted for symmetry with
    the other stores; nothing here is stamped by the store).
    """

    def __init__(self, database: AsyncDatabase[Any], *, clock: Clock | None = None) -> None:
        super().__init__(database)
        self._clock: Clock = clock or _utc_now
        self._views = _collection(database, _VIEWS)
        self._parked = _collection(database, _PARKED)

    @classmethod
    def from_uri(cls, uri: str, database: str, *, clock: Clock | None = None, **client_options: Any) -> Self:
        """A view store on its own ``AsyncMongoClient`` (see ``MongoEventStore.from_uri``)."""
        client = _new_client(uri, **client_options)
        return cls(client[database], clock=clock)._owning(client)

    async def ensure_indexes(self) -> None:
        """Create every index the view store relies on (idempotent)."""
        await _create_indexes(
            self._views,
            [
                IndexModel(
                    [("view", ASCENDING), ("tenant_id", ASCENDING), ("key", ASCENDING)],
                    name="view_tenant_key",
                    unique=True,
                )
            ],
        )
        await _create_indexes(
            self._parked,
            [
                IndexModel(
                    [("consumer", ASCENDING), ("event_id", ASCENDING)],
                    name="consumer_event",
                    unique=True,
                ),
                IndexModel(
                    [("parked_at", ASCENDING), ("consumer", ASCENDING), ("event_id", ASCENDING)],
                    name="oldest_first",
                ),
                IndexModel(
                    [("consumer", ASCENDING), ("parked_at", ASCENDING), ("event_id", ASCENDING)],
                    name="consumer_oldest_first",
                ),
            ],
        )

    @staticmethod
    def _doc_key(view: str, tenant_id: str, key: str) -> dict[str, str]:
        return {"view": view, "tenant_id": tenant_id, "key": key}

    async def load(self, view: str, tenant_id: str, key: str) -> ViewDoc | None:
        """The document, or None when it was never saved."""
        await self._ready()
        found = await self._views.find_one(
            self._doc_key(view, tenant_id, key), projection={"_id": 0, "version": 1, "doc": 1}
        )
        if found is None:
            return None
        return ViewDoc(key=key, version=int(found["version"]), doc=dict(found["doc"]))

    async def save(
        self,
        view: str,
        tenant_id: str,
        key: str,
        doc: dict[str, Any],
        version: int,
        expected_version: int,
    ) -> None:
        """Insert when ``expected_version`` is 0, else update only at that version."""
        await self._ready()
        where = self._doc_key(view, tenant_id, key)
        if expected_version == 0:
            try:
                await self._views.insert_one({**where, "version": version, "doc": doc})
            except DuplicateKeyError as exc:
                raise ViewConflict(f"view {view}/{tenant_id}/{key} already exists") from exc
            return
        result = await self._views.update_one(
            {**where, "version": expected_version}, {"$set": {"version": version, "doc": doc}}
        )
        if result.matched_count == 0:
            raise ViewConflict(f"view {view}/{tenant_id}/{key} is not at version {expected_version}")

    async def find(self, view: str, tenant_id: str, field_name: str, value: Any, limit: int = 1000) -> list[ViewDoc]:
        """Equality on ``doc.<field_name>`` with MongoDB's semantics (so an array field
        also matches one of its elements). Uses the ``(view, tenant_id, key)`` index for
        the view and tenant; the field itself is not indexed."""
        if not field_name or "." in field_name or field_name.startswith("$"):
            raise ValueError(f"not a top-level field name: {field_name!r}")
        if limit <= 0:
            return []
        await self._ready()
        found = (
            await self._views.find(
                {"view": view, "tenant_id": tenant_id, f"doc.{field_name}": value},
                projection={"_id": 0, "key": 1, "version": 1, "doc": 1},
            )
            .sort("key", ASCENDING)
            .limit(limit)
            .to_list(None)
        )
        return [ViewDoc(key=d["key"], version=int(d["version"]), doc=dict(d["doc"])) for d in found]

    async def count(self, view: str, tenant_id: str | None = None) -> int:
        """How many documents the view holds (for one tenant, or all)."""
        await self._ready()
        query: dict[str, Any] = {"view": view}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        return await self._views.count_documents(query)

    async def drop(self, view: str) -> None:
        """Delete every document of the view, for every tenant."""
        await self._ready()
        await self._views.delete_many({"view": view})

    async def park(self, message: ParkedMessage) -> None:
        """Upsert on ``(consumer, event_id)``: the latest attempt count, error and time win."""
        await self._ready()
        fields = {
            "tenant_id": message.tenant_id,
            "stream": message.stream,
            "version": message.version,
            "subject": message.subject,
            "attempts": message.attempts,
            "error": message.error,
            "parked_at": _to_bson_time(message.parked_at),
        }
        where = {"consumer": message.consumer, "event_id": message.event_id}
        for attempt in range(2):
            try:
                await self._parked.update_one(where, {"$set": fields}, upsert=True)
                return
            except DuplicateKeyError:  # two first upserts raced: the second now updates
                if attempt:
                    raise

    async def parked(self, consumer: str | None = None, limit: int = 1000) -> list[ParkedMessage]:
        """Parked messages, oldest first, for one consumer or all."""
        if limit <= 0:
            return []
        await self._ready()
        query: dict[str, Any] = {} if consumer is None else {"consumer": consumer}
        found = (
            await self._parked.find(query)
            .sort([("parked_at", ASCENDING), ("consumer", ASCENDING), ("event_id", ASCENDING)])
            .limit(limit)
            .to_list(None)
        )
        return [
            ParkedMessage(
                consumer=d["consumer"],
                event_id=d["event_id"],
                tenant_id=d["tenant_id"],
                stream=d["stream"],
                version=int(d["version"]),
                subject=d["subject"],
                attempts=int(d["attempts"]),
                error=d["error"],
                parked_at=_from_bson_time(d["parked_at"]),
            )
            for d in found
        ]

    async def unpark(self, consumer: str, event_id: str) -> None:
        """Forget one parked message (no error if it is not there)."""
        await self._ready()
        await self._parked.delete_one({"consumer": consumer, "event_id": event_id})


class MongoDeadlineStore(_MongoStore, DeadlineStore):
    """Durable deadlines on MongoDB: one document per ``(timer, tenant_id, key)``.

    ``deadlines`` holds ``{timer, tenant_id, key, due_at, data}`` with a unique index on
    ``(timer, tenant_id, key)`` (``schedule`` is an upsert on it) and an index on
    ``(timer, due_at, tenant_id, key)``, so ``due`` reads only what is due, in order.
    Constructor, ``from_uri``, lazy index creation and ``close`` behave as in
    ``MongoEventStore``.
    """

    def __init__(self, database: AsyncDatabase[Any]) -> None:
        super().__init__(database)
        self._deadlines = _collection(database, _DEADLINES)

    @classmethod
    def from_uri(cls, uri: str, database: str, **client_options: Any) -> Self:
        """A deadline store on its own ``AsyncMongoClient`` (see ``MongoEventStore``)."""
        client = _new_client(uri, **client_options)
        return cls(client[database])._owning(client)

    async def ensure_indexes(self) -> None:
        """Create every index the deadline store relies on (idempotent)."""
        await _create_indexes(
            self._deadlines,
            [
                IndexModel(
                    [("timer", ASCENDING), ("tenant_id", ASCENDING), ("key", ASCENDING)],
                    name="timer_tenant_key",
                    unique=True,
                ),
                IndexModel(
                    [
                        ("timer", ASCENDING),
                        ("due_at", ASCENDING),
                        ("tenant_id", ASCENDING),
                        ("key", ASCENDING),
                    ],
                    name="timer_due_at",
                ),
            ],
        )

    @staticmethod
    def _where(timer: str, tenant_id: str, key: str) -> dict[str, str]:
        return {"timer": timer, "tenant_id": tenant_id, "key": key}

    @staticmethod
    def _deadline(doc: Mapping[str, Any]) -> Deadline:
        return Deadline(
            timer=doc["timer"],
            tenant_id=doc["tenant_id"],
            key=doc["key"],
            due_at=_from_bson_time(doc["due_at"]),
            data=dict(doc.get("data") or {}),
        )

    async def schedule(self, deadline: Deadline) -> None:
        """Create or move the deadline (an upsert; ``due_at`` kept to the millisecond)."""
        await self._ready()
        where = self._where(deadline.timer, deadline.tenant_id, deadline.key)
        fields = {"due_at": _to_bson_time(deadline.due_at), "data": dict(deadline.data)}
        for attempt in range(2):
            try:
                await self._deadlines.update_one(where, {"$set": fields}, upsert=True)
                return
            except DuplicateKeyError:  # two first upserts raced: the second now updates
                if attempt:
                    raise

    async def cancel(self, timer: str, tenant_id: str, key: str, due_at: datetime | None = None) -> None:
        """Remove the deadline; with ``due_at``, only if it is still due then."""
        await self._ready()
        where: dict[str, Any] = self._where(timer, tenant_id, key)
        if due_at is not None:
            where["due_at"] = _to_bson_time(due_at)
        await self._deadlines.delete_one(where)

    async def get(self, timer: str, tenant_id: str, key: str) -> Deadline | None:
        """The deadline, or None."""
        await self._ready()
        found = await self._deadlines.find_one(self._where(timer, tenant_id, key))
        return None if found is None else self._deadline(found)

    async def due(self, timer: str, now: datetime, limit: int = 100) -> list[Deadline]:
        """Deadlines of ``timer`` due at ``now``, earliest first, across tenants."""
        if limit <= 0:
            return []
        await self._ready()
        found = (
            await self._deadlines.find({"timer": timer, "due_at": {"$lte": _to_bson_time(now)}})
            .sort([("due_at", ASCENDING), ("tenant_id", ASCENDING), ("key", ASCENDING)])
            .limit(limit)
            .to_list(None)
        )
        return [self._deadline(d) for d in found]

    async def count(self, timer: str) -> int:
        """How many deadlines of ``timer`` are pending (due or not)."""
        await self._ready()
        return await self._deadlines.count_documents({"timer": timer})
