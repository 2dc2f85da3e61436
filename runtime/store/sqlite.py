"""SQLite adapter of the event-store port: ``SqliteEventStore`` and ``SqliteViewStore``.

The only module in Baton that imports ``sqlite3``. One database file holds four tables:
``events`` (streams, global order and the outbox), ``views`` (services' documents),
``parked`` (messages consumers gave up on) and ``deadlines`` (durable timers). The store
classes (``SqliteEventStore``, ``SqliteViewStore``, ``SqliteDeadlineStore``) may point at
the same file or at separate ones; each file gets the whole schema.

Durability and several processes on one file:

- WAL journal with ``synchronous=FULL`` (survives power loss, not only crashes);
- ``busy_timeout`` so a writer waits for another instead of failing at once;
- every write is one short explicit transaction started with ``BEGIN IMMEDIATE`` (the
  write lock is taken up front, so a transaction never has to upgrade a read lock and
  fail with ``SQLITE_BUSY``); the connection runs with ``isolation_level=None`` so
  Python's ``sqlite3`` never opens transactions behind our back;
- the schema is created with ``CREATE ... IF NOT EXISTS`` inside ``BEGIN IMMEDIATE``, so
  processes starting at the same moment on a fresh file do not trip over each other.

Global order: ``position`` is an ``AUTOINCREMENT`` key. SQLite admits one writer at a
time and a reader sees a snapshot of committed transactions, so positions become visible
in increasing order and ``read_all`` readers that resume from the last position they saw
never skip an event. (``AUTOINCREMENT`` also guarantees positions are never reused, even
after the newest events were deleted by hand.)

Async without blocking the loop: each store object owns one worker thread (a
``ThreadPoolExecutor`` with one worker) and one connection created lazily in that thread;
every call runs there via ``loop.run_in_executor``. Construction is cheap and does no
I/O: the file, its folders, the connection and the schema are created on first use. Use
``await Store.open(path)`` to construct and connect at once (it fails early if the file
cannot be opened). ``close()`` closes the connection and stops the thread.

A call whose awaiting task is cancelled still runs to completion in the worker thread:
each call is one whole transaction, so it either commits or rolls back, never dangles.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar
from uuid import UUID

from runtime.audit.chain import GENESIS_HASH, chain_links, event_hash
from runtime.store.port import (
    AppendResult,
    Deadline,
    DeadlineStore,
    DuplicateEventId,
    EventStore,
    NewEvent,
    ParkedMessage,
    RecordedEvent,
    ViewConflict,
    ViewDoc,
    ViewStore,
    WrongExpectedVersion,
)

__all__ = ["SqliteDeadlineStore", "SqliteEventStore", "SqliteViewStore"]

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another one's lock before giving up."""

_MAX_PARAMS = 500
"""Ids per ``IN (...)`` list: well below SQLite's bound-parameter limit."""

SCHEMA_VERSION = 2
"""Stored in ``PRAGMA user_version``; bump it together with a migration.

1: the first schema. 2: ``events.hash`` and ``events.previous_hash`` (the hash chain);
a version-1 file gets the columns and its existing events chained when first opened.
"""

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS events (
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
        hash           TEXT    NOT NULL,
        previous_hash  TEXT    NOT NULL,
        UNIQUE (tenant_id, stream, version)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS events_unpublished ON events (position) WHERE published = 0
    """,
    """
    CREATE TABLE IF NOT EXISTS views (
        view      TEXT    NOT NULL,
        tenant_id TEXT    NOT NULL,
        key       TEXT    NOT NULL,
        version   INTEGER NOT NULL,
        doc       TEXT    NOT NULL,
        PRIMARY KEY (view, tenant_id, key)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS parked (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        consumer  TEXT    NOT NULL,
        event_id  TEXT    NOT NULL,
        tenant_id TEXT    NOT NULL,
        stream    TEXT    NOT NULL,
        version   INTEGER NOT NULL,
        subject   TEXT    NOT NULL,
        attempts  INTEGER NOT NULL,
        error     TEXT    NOT NULL,
        parked_at TEXT    NOT NULL,
        UNIQUE (consumer, event_id)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS parked_oldest_first ON parked (parked_at, seq)
    """,
    """
    CREATE TABLE IF NOT EXISTS deadlines (
        timer     TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        key       TEXT NOT NULL,
        due_at    TEXT NOT NULL,
        data      TEXT NOT NULL,
        PRIMARY KEY (timer, tenant_id, key)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS deadlines_due ON deadlines (timer, due_at, tenant_id, key)
    """,
)

_EVENT_COLUMNS = (
    "position, tenant_id, stream, version, event_id, event_type, schema_version, "
    "data, metadata, recorded_at, hash, previous_hash"
)

_PARKED_COLUMNS = "consumer, event_id, tenant_id, stream, version, subject, attempts, error, parked_at"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a fixed width, so text order is time order."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _chunks(items: Sequence[T], size: int = _MAX_PARAMS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _no_limit(limit: int | None) -> int:
    """SQLite's ``LIMIT -1`` means no limit."""
    return -1 if limit is None else limit


def _connect(path: Path) -> sqlite3.Connection:
    """A configured connection with the schema in place. Runs in the worker thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,  # autocommit: we issue BEGIN IMMEDIATE / COMMIT ourselves
        check_same_thread=False,  # created and used in the worker thread, closed there too
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = _retry_while_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{path}: could not enable WAL (mode {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")

        def create_schema() -> None:
            for statement in _SCHEMA:
                conn.execute(statement)
            _chain_unchained_events(conn)
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        _write(conn, create_schema)
    except BaseException:
        conn.close()
        raise
    return conn


def _chain_unchained_events(conn: sqlite3.Connection) -> None:
    """Migration 1 -> 2: add the chain columns to a file created before them and chain
    its events, stream by stream in version order. Runs inside the schema transaction;
    a file that has the columns is left alone. (The chain of such legacy events proves
    that nothing changed after the migration, not before it.)"""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "hash" in columns:
        return
    conn.execute("ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE events ADD COLUMN previous_hash TEXT NOT NULL DEFAULT ''")
    rows = conn.execute(
        "SELECT position, tenant_id, stream, version, event_id, event_type, schema_version, data, metadata "
        "FROM events ORDER BY tenant_id, stream, version"
    ).fetchall()
    stream_of: tuple[str, str] | None = None
    previous = GENESIS_HASH
    for position, tenant_id, stream, version, event_id, event_type, schema_version, data, metadata in rows:
        if (tenant_id, stream) != stream_of:
            stream_of, previous = (tenant_id, stream), GENESIS_HASH
        digest = event_hash(
            previous_hash=previous,
            tenant_id=tenant_id,
            stream=stream,
            version=version,
            event_id=UUID(event_id),
            event_type=event_type,
            schema_version=schema_version,
            data=bytes(data),
            metadata=bytes(metadata),
        )
        conn.execute("UPDATE events SET hash = ?, previous_hash = ? WHERE position = ?", (digest, previous, position))
        previous = digest


def _retry_while_locked(action: Callable[[], T]) -> T:
    """Retry ``action`` while another connection holds a lock that the busy handler does
    not wait for (switching a fresh file to WAL can report ``database is locked`` at once
    when another process is doing the same)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _write(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction: commit, or roll back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class _SqliteDatabase:
    """One connection to one file, used from one dedicated worker thread."""

    def __init__(self, path: Path | str, clock: Callable[[], datetime] | None = None) -> None:
        self._path = Path(path)
        self._clock = clock or _utc_now
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, clock: Callable[[], datetime] | None = None) -> Self:
        """Construct the store and connect now (creating the file and schema if needed)."""
        store = cls(path, clock)
        try:
            await store.ping()
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} on {self._path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_worker, work)

    def _in_worker(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = _connect(self._path)
        return work(self._conn)

    def _close_in_worker(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def ping(self) -> None:
        """Raise if the file cannot be opened and queried."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            # Queued behind any call still in flight: those finish first.
            await loop.run_in_executor(self._executor, self._close_in_worker)
        finally:
            self._executor.shutdown(wait=False)


def _recorded(row: tuple[Any, ...]) -> RecordedEvent:
    position, tenant_id, stream, version, event_id, event_type, schema_version, *rest = row
    data, metadata, recorded_at, digest, previous_hash = rest
    return RecordedEvent(
        tenant_id=tenant_id,
        stream=stream,
        version=version,
        position=position,
        event_id=UUID(event_id),
        event_type=event_type,
        schema_version=schema_version,
        data=bytes(data),
        metadata=bytes(metadata),
        recorded_at=datetime.fromisoformat(recorded_at),
        hash=digest,
        previous_hash=previous_hash,
    )


class SqliteEventStore(_SqliteDatabase, EventStore):
    """``EventStore`` on one SQLite file: streams, global order and the outbox.

    ``SqliteEventStore(path, clock=None)`` does no I/O; the file (and its folders) and
    schema are created on first use, or at once with ``await SqliteEventStore.open(path)``.
    ``clock`` (default: timezone-aware UTC now) stamps ``recorded_at``.
    Several store objects and several processes may use the same file at once.
    """

    async def append(
        self,
        tenant_id: str,
        stream: str,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> AppendResult:
        """See ``EventStore.append``. One ``BEGIN IMMEDIATE`` transaction."""
        events = list(events)
        if not events:
            raise ValueError("append needs at least one event")
        ids = [str(e.event_id) for e in events]
        if len(set(ids)) != len(ids):
            raise DuplicateEventId(f"stream {tenant_id}/{stream}: an event id repeats in one append")

        def work(conn: sqlite3.Connection) -> AppendResult:
            return _write(
                conn,
                lambda: self._append_locked(
                    conn,
                    tenant_id=tenant_id,
                    stream=stream,
                    expected_version=expected_version,
                    events=events,
                    ids=ids,
                ),
            )

        return await self._run(work)

    def _append_locked(
        self,
        conn: sqlite3.Connection,
        *,
        tenant_id: str,
        stream: str,
        expected_version: int,
        events: list[NewEvent],
        ids: list[str],
    ) -> AppendResult:
        existing: dict[str, tuple[str, str, int, int, str]] = {}
        for chunk in _chunks(ids):
            for event_id, tenant, strm, version, position, digest in conn.execute(
                "SELECT event_id, tenant_id, stream, version, position, hash FROM events "
                f"WHERE event_id IN ({_placeholders(len(chunk))})",
                chunk,
            ):
                existing[event_id] = (tenant, strm, version, position, digest)
        if existing:
            return _duplicate_result(tenant_id, stream, ids, existing)

        # The stream's head (version and hash), read under the write lock: the new
        # events chain to it and no other writer can append in between.
        row = conn.execute(
            "SELECT version, hash FROM events WHERE tenant_id = ? AND stream = ? ORDER BY version DESC LIMIT 1",
            (tenant_id, stream),
        ).fetchone()
        actual, head_hash = (row[0], row[1]) if row else (0, GENESIS_HASH)
        if actual != expected_version:
            raise WrongExpectedVersion(tenant_id, stream, expected_version, actual)
        links = chain_links(tenant_id, stream, actual + 1, head_hash, events)

        recorded_at = _timestamp(self._clock())
        positions: list[int] = []
        try:
            for offset, (event, link) in enumerate(zip(events, links, strict=True), start=1):
                cursor = conn.execute(
                    "INSERT INTO events (tenant_id, stream, version, event_id, event_type, "
                    "schema_version, data, metadata, recorded_at, hash, previous_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        tenant_id,
                        stream,
                        actual + offset,
                        str(event.event_id),
                        event.event_type,
                        event.schema_version,
                        bytes(event.data),
                        bytes(event.metadata),
                        recorded_at,
                        link.hash,
                        link.previous_hash,
                    ),
                )
                assert cursor.lastrowid is not None
                positions.append(cursor.lastrowid)
        except sqlite3.IntegrityError as error:  # not expected under the write lock
            if "event_id" in str(error):
                raise DuplicateEventId(str(error)) from error
            raise
        return AppendResult(
            first_version=actual + 1,
            last_version=actual + len(events),
            positions=tuple(positions),
            hashes=tuple(link.hash for link in links),
        )

    async def read_stream(
        self,
        tenant_id: str,
        stream: str,
        after_version: int = 0,
        until_version: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """See ``EventStore.read_stream``; served by the (tenant, stream, version) index."""
        if limit is not None and limit <= 0:
            return []
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND stream = ? AND version > ?"
        params: list[Any] = [tenant_id, stream, after_version]
        if until_version is not None:
            sql += " AND version <= ?"
            params.append(until_version)
        sql += " ORDER BY version LIMIT ?"
        params.append(_no_limit(limit))
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [_recorded(r) for r in rows]

    async def stream_version(self, tenant_id: str, stream: str) -> int:
        """See ``EventStore.stream_version``."""
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT MAX(version) FROM events WHERE tenant_id = ? AND stream = ?",
                (tenant_id, stream),
            ).fetchone()
        )
        return int(row[0] or 0)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """See ``EventStore.read_all``. Safe without extra care: writers are serialised,
        so no commit can ever land below a position a reader has already seen."""
        if limit <= 0:
            return []
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after_position, limit),
            ).fetchall()
        )
        return [_recorded(r) for r in rows]

    async def unpublished(self, limit: int = 500) -> list[RecordedEvent]:
        """See ``EventStore.unpublished``; served by the partial index on unpublished rows."""
        if limit <= 0:
            return []
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE published = 0 ORDER BY position LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [_recorded(r) for r in rows]

    async def mark_published(self, event_ids: Sequence[UUID]) -> None:
        """See ``EventStore.mark_published``. Unknown ids are ignored."""
        ids = sorted({str(e) for e in event_ids})
        if not ids:
            return

        def work(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(ids):
                conn.execute(
                    "UPDATE events SET published = 1 "
                    f"WHERE published = 0 AND event_id IN ({_placeholders(len(chunk))})",
                    chunk,
                )

        await self._run(lambda conn: _write(conn, lambda: work(conn)))


def _duplicate_result(
    tenant_id: str,
    stream: str,
    ids: list[str],
    existing: dict[str, tuple[str, str, int, int, str]],
) -> AppendResult:
    """An idempotent retry's result, or ``DuplicateEventId`` if it is not one.

    A retry is recognised when every id is already in this stream, in this order, at
    consecutive versions (as one append would have written them).
    """
    found = [existing.get(i) for i in ids]
    if all(f is not None and f[0] == tenant_id and f[1] == stream for f in found):
        versions = [f[2] for f in found if f is not None]
        if versions == list(range(versions[0], versions[0] + len(versions))):
            return AppendResult(
                first_version=versions[0],
                last_version=versions[-1],
                positions=tuple(f[3] for f in found if f is not None),
                duplicate=True,
                hashes=tuple(f[4] for f in found if f is not None),
            )
        raise DuplicateEventId(f"stream {tenant_id}/{stream}: these event ids were appended in another order")
    clashes = sorted(existing)
    raise DuplicateEventId(
        f"stream {tenant_id}/{stream}: {len(clashes)} of {len(ids)} event ids already exist "
        f"(not as this exact append to this stream): {', '.join(clashes[:5])}"
    )


def _json_path(field_name: str) -> str:
    if '"' in field_name:
        raise ValueError(f"field names with double quotes are not supported: {field_name!r}")
    return f'$."{field_name}"'


def _field_equals(field_name: str, value: Any) -> tuple[str, list[Any]]:
    """SQL matching a top-level JSON field equal to ``value``, with JSON's types: the
    string "1" is not the number 1, and ``True`` is not 1."""
    path = _json_path(field_name)
    if value is None:
        return "json_type(doc, ?) = 'null'", [path]
    if isinstance(value, bool):
        return "json_type(doc, ?) = ?", [path, "true" if value else "false"]
    if isinstance(value, int | float):
        return (
            "json_type(doc, ?) IN ('integer', 'real') AND json_extract(doc, ?) = ?",
            [path, path, value],
        )
    if isinstance(value, str):
        return "json_type(doc, ?) = 'text' AND json_extract(doc, ?) = ?", [path, path, value]
    # Objects and arrays: compare their minified JSON text (key order matters).
    return (
        "json_type(doc, ?) IN ('object', 'array') AND json_extract(doc, ?) = json(?)",
        [path, path, _dump(value)],
    )


def _dump(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _parked(row: tuple[Any, ...]) -> ParkedMessage:
    consumer, event_id, tenant_id, stream, version, subject, attempts, error, parked_at = row
    return ParkedMessage(
        consumer=consumer,
        event_id=event_id,
        tenant_id=tenant_id,
        stream=stream,
        version=version,
        subject=subject,
        attempts=attempts,
        error=error,
        parked_at=datetime.fromisoformat(parked_at),
    )


class SqliteViewStore(_SqliteDatabase, ViewStore):
    """``ViewStore`` on one SQLite file: JSON documents saved by compare-and-set, and
    parked messages.

    Documents must be JSON-serialisable (no NaN or infinity); they come back as parsed
    JSON. Construction and ``open`` work as for ``SqliteEventStore``. ``park`` stores the
    message's own ``parked_at`` (which must be timezone-aware); the clock is not used.
    """

    async def load(self, view: str, tenant_id: str, key: str) -> ViewDoc | None:
        """See ``ViewStore.load``."""
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT version, doc FROM views WHERE view = ? AND tenant_id = ? AND key = ?",
                (view, tenant_id, key),
            ).fetchone()
        )
        if row is None:
            return None
        return ViewDoc(key=key, version=row[0], doc=json.loads(row[1]))

    async def save(
        self,
        view: str,
        tenant_id: str,
        key: str,
        doc: dict[str, Any],
        version: int,
        expected_version: int,
    ) -> None:
        """See ``ViewStore.save``: INSERT when ``expected_version`` is 0, otherwise an
        UPDATE guarded by the stored version; ``ViewConflict`` when it does not apply."""
        text = _dump(doc)

        def work(conn: sqlite3.Connection) -> None:
            if expected_version == 0:
                try:
                    conn.execute(
                        "INSERT INTO views (view, tenant_id, key, version, doc) VALUES (?, ?, ?, ?, ?)",
                        (view, tenant_id, key, version, text),
                    )
                except sqlite3.IntegrityError as error:
                    raise ViewConflict(f"view {view} {tenant_id}/{key}: already exists (expected none)") from error
                return
            cursor = conn.execute(
                "UPDATE views SET version = ?, doc = ? WHERE view = ? AND tenant_id = ? AND key = ? AND version = ?",
                (version, text, view, tenant_id, key, expected_version),
            )
            if cursor.rowcount == 0:
                raise ViewConflict(f"view {view} {tenant_id}/{key}: not at version {expected_version}")

        await self._run(lambda conn: _write(conn, lambda: work(conn)))

    async def find(self, view: str, tenant_id: str, field_name: str, value: Any, limit: int = 1000) -> list[ViewDoc]:
        """See ``ViewStore.find``. Ordered by key. Scans the view's documents of the tenant."""
        if limit <= 0:
            return []
        condition, params = _field_equals(field_name, value)
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT key, version, doc FROM views WHERE view = ? AND tenant_id = ? "
                f"AND {condition} ORDER BY key LIMIT ?",
                [view, tenant_id, *params, limit],
            ).fetchall()
        )
        return [ViewDoc(key=k, version=v, doc=json.loads(d)) for k, v, d in rows]

    async def count(self, view: str, tenant_id: str | None = None) -> int:
        """See ``ViewStore.count``."""
        sql, params = "SELECT COUNT(*) FROM views WHERE view = ?", [view]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        row = await self._run(lambda conn: conn.execute(sql, params).fetchone())
        return int(row[0])

    async def drop(self, view: str) -> None:
        """See ``ViewStore.drop``."""
        await self._run(lambda conn: _write(conn, lambda: conn.execute("DELETE FROM views WHERE view = ?", (view,))))

    async def park(self, message: ParkedMessage) -> None:
        """See ``ViewStore.park``: an upsert keyed by (consumer, event_id)."""
        params = (
            message.consumer,
            message.event_id,
            message.tenant_id,
            message.stream,
            message.version,
            message.subject,
            message.attempts,
            message.error,
            _timestamp(message.parked_at),
        )
        await self._run(
            lambda conn: _write(
                conn,
                lambda: conn.execute(
                    f"INSERT INTO parked ({_PARKED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (consumer, event_id) DO UPDATE SET "
                    "tenant_id = excluded.tenant_id, stream = excluded.stream, "
                    "version = excluded.version, subject = excluded.subject, "
                    "attempts = excluded.attempts, error = excluded.error, "
                    "parked_at = excluded.parked_at",
                    params,
                ),
            )
        )

    async def parked(self, consumer: str | None = None, limit: int = 1000) -> list[ParkedMessage]:
        """See ``ViewStore.parked``: ordered by ``parked_at``, then by first parking."""
        if limit <= 0:
            return []
        where, params = "", list[Any]([limit])
        if consumer is not None:
            where, params = "WHERE consumer = ? ", [consumer, limit]
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_PARKED_COLUMNS} FROM parked {where}ORDER BY parked_at, seq LIMIT ?",
                params,
            ).fetchall()
        )
        return [_parked(r) for r in rows]

    async def unpark(self, consumer: str, event_id: str) -> None:
        """See ``ViewStore.unpark``. Unknown messages are ignored."""
        await self._run(
            lambda conn: _write(
                conn,
                lambda: conn.execute(
                    "DELETE FROM parked WHERE consumer = ? AND event_id = ?",
                    (consumer, event_id),
                ),
            )
        )


def _deadline(row: tuple[Any, ...]) -> Deadline:
    timer, tenant_id, key, due_at, data = row
    return Deadline(
        timer=timer,
        tenant_id=tenant_id,
        key=key,
        due_at=datetime.fromisoformat(due_at),
        data=json.loads(data),
    )


class SqliteDeadlineStore(_SqliteDatabase, DeadlineStore):
    """``DeadlineStore`` on one SQLite file: one row per ``(timer, tenant_id, key)``.

    ``due_at`` is kept in UTC to the microsecond (it must be timezone-aware); ``data``
    must be JSON-serialisable. ``due`` is served by an index on ``(timer, due_at)``.
    Construction and ``open`` work as for ``SqliteEventStore``; the clock is not used.
    """

    async def schedule(self, deadline: Deadline) -> None:
        """Create or move the deadline (an upsert)."""
        params = (
            deadline.timer,
            deadline.tenant_id,
            deadline.key,
            _timestamp(deadline.due_at),
            _dump(dict(deadline.data)),
        )
        await self._run(
            lambda conn: _write(
                conn,
                lambda: conn.execute(
                    "INSERT INTO deadlines (timer, tenant_id, key, due_at, data) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (timer, tenant_id, key) "
                    "DO UPDATE SET due_at = excluded.due_at, data = excluded.data",
                    params,
                ),
            )
        )

    async def cancel(self, timer: str, tenant_id: str, key: str, due_at: datetime | None = None) -> None:
        """Remove the deadline (idempotent); with ``due_at``, only if it is still due then."""
        sql = "DELETE FROM deadlines WHERE timer = ? AND tenant_id = ? AND key = ?"
        params = [timer, tenant_id, key]
        if due_at is not None:
            sql += " AND due_at = ?"
            params.append(_timestamp(due_at))
        await self._run(lambda conn: _write(conn, lambda: conn.execute(sql, params)))

    async def get(self, timer: str, tenant_id: str, key: str) -> Deadline | None:
        """The deadline, or None."""
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT timer, tenant_id, key, due_at, data FROM deadlines "
                "WHERE timer = ? AND tenant_id = ? AND key = ?",
                (timer, tenant_id, key),
            ).fetchone()
        )
        return None if row is None else _deadline(row)

    async def due(self, timer: str, now: datetime, limit: int = 100) -> list[Deadline]:
        """Deadlines of ``timer`` with ``due_at <= now``, earliest first, across tenants."""
        if limit <= 0:
            return []
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT timer, tenant_id, key, due_at, data FROM deadlines "
                "WHERE timer = ? AND due_at <= ? ORDER BY due_at, tenant_id, key LIMIT ?",
                (timer, _timestamp(now), limit),
            ).fetchall()
        )
        return [_deadline(r) for r in rows]

    async def count(self, timer: str) -> int:
        """How many deadlines of ``timer`` are pending (due or not)."""
        row = await self._run(
            lambda conn: conn.execute("SELECT COUNT(*) FROM deadlines WHERE timer = ?", (timer,)).fetchone()
        )
        return int(row[0])
