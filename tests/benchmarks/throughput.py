"""Throughput benchmark: Baton side by side with its references, in one run.

Run it from the repository root (not collected by pytest: it is not a test, and nothing
here asserts a timing)::

    python -m tests.benchmarks.throughput [--events 5000] [--repeat 3] [--out FILE]

Everything runs on this machine in one process, against one local nats-server
(``runtime.natsserver.start_nats``: JetStream with ``sync_interval: always``, so every
message is fsynced before it is acknowledged) and SQLite files in a temporary folder.
Each measurement has a short warm-up (``--warmup`` events, not counted) and
``--repeat`` repetitions; the tables show the median. The sides of a comparison run in
turn within each repetition (Baton, reference, Baton, reference, ...), so a slow spell
of the machine (a busy disk, another process) does not fall on one side only. Ratios
are Baton's rate divided by the reference's rate: above 1 Baton is faster.

1. Store, against the ``eventsourcing`` library's SQLite recorder on the same engine
   (skipped, with a message, when ``eventsourcing`` is not installed):

   - Baton: ``SqliteEventStore`` (WAL, ``synchronous=FULL``, ``busy_timeout`` 30 s,
     every append one ``BEGIN IMMEDIATE`` transaction: duplicate-id check, read of the
     stream head, SHA-256 hash chain, insert; awaited from the event loop and run in
     the store's one worker thread).
   - eventsourcing: ``SQLiteApplicationRecorder`` (per-stream versions as the primary
     key for optimistic concurrency, plus a global order by ``rowid``: the recorder that
     matches Baton's store) on ``SQLiteDatastore`` (WAL, which it sets itself;
     ``synchronous=FULL``, set here on every connection it opens; lock timeout 30 s;
     every insert one deferred ``BEGIN`` transaction). Called synchronously, as the
     library is meant to be used, and once more through a one-thread executor, as an
     asyncio service would have to call it (Baton's store does that hop itself).
   - The same stream names and the same bytes: eventsourcing stores ``data`` +
     ``metadata`` of each Baton event as its ``state`` and the event type as ``topic``.
   - Appends, one event per call: ``--events`` new streams (version 1 each), and
     ``--events`` consecutive versions of one stream (each append expects the version
     before: optimistic concurrency). Read: one stream of ``--read-events`` events,
     Baton ``read_stream`` against eventsourcing ``select_events``.

2. Transport, against raw nats-py on the same JetStream (the stream configuration of
   ``runtime.bus.jetstream.stream_config``, a fresh stream per repetition):

   - publish ``--events`` messages, awaiting each PubAck, one at a time and with
     ``--window`` publishes in flight: raw ``js.publish`` of a payload as large as a
     Baton envelope with a ``Nats-Msg-Id`` header, against Baton's
     ``JetStreamPublisher`` (through FastStream) publishing stored ``RecordedEvent``s
     (envelope encoding and Baton's headers included);
   - consume them: a raw pull consumer (Baton's consumer configuration, fetching
     ``--batch`` at a time and acking each) against Baton's ``ProjectionConsumer``
     attached with ``runtime.bus.nats.attach`` to a FastStream broker, applying every
     event to a trivial projection in a ``SqliteViewStore`` (one document per stream,
     saved by compare-and-set: one fsynced SQLite transaction per event); and, to
     separate the two costs, a FastStream subscriber wired as ``attach`` wires Baton's
     whose handler only acks. Timed from subscribing until the last event is
     acknowledged (raw, FastStream) or applied (Baton).

3. End to end through the whole Baton pipeline: ``runtime.commanding.execute`` (read,
   fold, decide, append) with ``OutboxRelay.publish_now`` as ``after_append``
   (publish, then mark published), JetStream, the ``ProjectionConsumer`` and its view.
   ``--events`` commands of one event each over ``--events / 10`` customers in turn
   (streams grow to 10 events; never fewer customers than commands in flight), with
   ``--e2e-concurrency`` commands in flight (one column each: 1, as one caller sees
   it, and 16, as a busy service would run them); the consumer runs all along in the
   same process. Latency per event: from the start of its ``append`` to its view
   document saved, split into its parts.

4. Where Baton's time goes: the parts of the consumer and publisher measured alone
   (no bus), so the gap to the raw transport can be read off the table.

``--profile N`` runs the measurements under cProfile and prints the top N functions by
own time (the event-loop thread only: the SQLite worker threads are not profiled).
Profiling slows everything down: the timings of such a run are not comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import importlib.metadata
import io
import logging
import os
import platform
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import nats
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.envelope import EventEnvelope
from contracts.events import Event, NoteAdded
from runtime.bus.consumer import ProjectionConsumer
from runtime.bus.jetstream import ensure_stream
from runtime.bus.nats import JetStreamPublisher, attach, declare, make_broker
from runtime.bus.outbox import OutboxRelay
from runtime.bus.subjects import MSG_ID_HEADER, all_events, event_subject
from runtime.commanding import execute
from runtime.config import Settings
from runtime.events import EventContext, customer_stream, encode_event, to_envelope
from runtime.natsserver import NatsServer, nats_server_binary, start_nats
from runtime.store.port import NewEvent, RecordedEvent
from runtime.store.sqlite import BUSY_TIMEOUT_S, SqliteEventStore, SqliteViewStore

T = TypeVar("T")

TENANT = "bench"
AGENT = "agent-7"
NOTE = "Customer called about invoice 4711; explained the late fee, agreed to waive it, will confirm by e-mail."


def _has_eventsourcing() -> bool:
    try:
        importlib.import_module("eventsourcing.sqlite")
    except ImportError:
        return False
    return True


HAS_EVENTSOURCING = _has_eventsourcing()
NO_EVENTSOURCING = (
    "eventsourcing is not installed: the store comparison is skipped (pip install eventsourcing to run it)"
)
ES_RECORDER = "eventsourcing SQLiteApplicationRecorder"
RAW = "raw nats-py"
WAIT_SECONDS = 300.0
"""How long to wait for a consumer to apply everything before giving up."""

Once = Callable[[int, int], Awaitable[float]]
"""One timed run: ``once(rep, count)`` (rep -1: the warm-up) returns the seconds taken."""


def now() -> datetime:
    return datetime.now(UTC)


def note(index: int) -> NoteAdded:
    return NoteAdded(contact_id="k1", note_id=f"n{index}", author_id=AGENT, text=NOTE)


def context() -> EventContext:
    return EventContext(actor=f"agent:{AGENT}", occurred_at=now(), correlation_id=uuid4())


def new_event(stream: str, index: int) -> NewEvent:
    """A real encoded event (a note on a contact), as a command appends it."""
    return encode_event(note(index), stream, context())


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[rank]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def unique_tag() -> str:
    return uuid4().hex[:10]


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


async def repeated(label: str, once: Once, count: int, warmup: int, repeat: int) -> float:
    """Warm up once with ``warmup`` items, then run ``repeat`` times with ``count`` items.
    Returns the median rate (items per second)."""
    return (await compare({label: once}, count, warmup, repeat))[label]


async def compare(contenders: dict[str, Once], count: int, warmup: int, repeat: int) -> dict[str, float]:
    """Warm each contender up, then run them in turn, ``repeat`` rounds: interleaved, so a
    slow spell of the machine (a busy disk, another process) hits every side alike.
    Returns each one's median rate (items per second)."""
    if warmup > 0:
        for once in contenders.values():
            await once(-1, warmup)
    rates: dict[str, list[float]] = {label: [] for label in contenders}
    for rep in range(repeat):
        for label, once in contenders.items():
            rates[label].append(rate(count, await once(rep, count)))
            progress(f"{label}: run {rep + 1}/{repeat}: {rates[label][-1]:,.0f}/s")
    return {label: statistics.median(values) for label, values in rates.items()}


# --- the report --------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a comparison table: rates (per second), medians over repetitions."""

    what: str
    baton: float | None
    reference_name: str
    reference: float | None
    unit: str = "events/s"

    def ratio(self) -> str:
        if self.baton is None or self.reference is None or self.reference == 0:
            return "n/a"
        return f"{self.baton / self.reference:.2f}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "skipped"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _table(rows: Iterable[Row]) -> list[str]:
    out = [
        "| measurement | unit | Baton | reference | reference value | Baton / reference |",
        "|---|---|---:|---|---:|---:|",
    ]
    out += [
        f"| {r.what} | {r.unit} | {_fmt(r.baton)} | {r.reference_name} | {_fmt(r.reference)} | {r.ratio()} |"
        for r in rows
    ]
    return out


def _pairs(pairs: Iterable[tuple[str, str]], head: str = "| figure | value |") -> list[str]:
    return [head, "|---|---|", *[f"| {k} | {v} |" for k, v in pairs]]


@dataclass
class Report:
    events: int
    repeat: int
    store_rows: list[Row] = field(default_factory=list)
    transport_rows: list[Row] = field(default_factory=list)
    e2e_levels: list[int] = field(default_factory=list)
    e2e: list[tuple[str, list[str]]] = field(default_factory=list)
    parts: list[tuple[str, str]] = field(default_factory=list)
    settings: list[tuple[str, str]] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [
            f"## Baton throughput: {self.events:,} events per run, median of {self.repeat} runs",
            "",
            "Ratios: Baton's rate / the reference's rate (above 1: Baton is faster).",
        ]
        if self.store_rows:
            lines += ["", "### 1. Event store (SQLite) vs `eventsourcing` on the same engine", ""]
            lines += _table(self.store_rows)
        if self.transport_rows:
            lines += ["", "### 2. Transport vs raw nats-py on the same JetStream", ""]
            lines += _table(self.transport_rows)
        if self.e2e:
            lines += ["", "### 3. End to end: execute -> append -> publish_now -> JetStream -> consumer -> view", ""]
            lines += [
                "| figure | " + " | ".join(f"{level} command(s) in flight" for level in self.e2e_levels) + " |",
                "|---|" + "---:|" * len(self.e2e_levels),
                *[f"| {k} | " + " | ".join(v) + " |" for k, v in self.e2e],
            ]
        if self.parts:
            lines += ["", "### 4. Where Baton's time goes (parts measured alone, no bus)", ""]
            lines += _pairs(self.parts)
        lines += ["", "### Settings each side ran with", "", *_pairs(self.settings, "| item | setting |")]
        lines += ["", "### Machine", "", *_pairs(self.facts, "| fact | value |")]
        if self.notes:
            lines += ["", "### Notes", "", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"


# --- 1. the store ------------------------------------------------------------------------


def eventsourcing_datastore(path: Path) -> Any:
    """eventsourcing's ``SQLiteDatastore`` with ``synchronous=FULL`` on every connection
    (it switches the file to WAL itself and leaves ``synchronous`` at SQLite's default)."""
    from eventsourcing.sqlite import SQLiteConnectionPool, SQLiteDatastore

    class FullSyncPool(SQLiteConnectionPool):
        def _create_connection(self) -> Any:
            connection = super()._create_connection()
            connection.cursor().execute("PRAGMA synchronous = FULL")
            return connection

    datastore = SQLiteDatastore(str(path), lock_timeout=int(BUSY_TIMEOUT_S), originator_id_type="text")
    datastore.pool.close()
    datastore.pool = FullSyncPool(db_name=str(path), lock_timeout=int(BUSY_TIMEOUT_S))
    return datastore


def stored_event(stream: str, version: int, event: NewEvent) -> Any:
    """The same event for eventsourcing: its bytes as ``state``, its type as ``topic``."""
    from eventsourcing.persistence import StoredEvent

    return StoredEvent(
        originator_id=stream, originator_version=version, topic=event.event_type, state=event.data + event.metadata
    )


def _pragmas(conn: sqlite3.Connection) -> str:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    return f"journal_mode={mode}, synchronous={sync} (2 = FULL)"


class StoreBench:
    """Baton's ``SqliteEventStore`` and eventsourcing's recorder, each on its own file."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.store = SqliteEventStore(folder / "baton-store.db")
        self.datastore: Any = None
        self.recorder: Any = None
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-eventsourcing")
        self.read_stream = customer_stream("read")

    async def open(self) -> None:
        await self.store.ping()
        if HAS_EVENTSOURCING:
            from eventsourcing.sqlite import SQLiteApplicationRecorder

            self.datastore = eventsourcing_datastore(self.folder / "eventsourcing-store.db")
            self.recorder = SQLiteApplicationRecorder(self.datastore)
            self.recorder.create_table()

    async def close(self) -> None:
        await self.store.close()
        if self.datastore is not None:
            self.datastore.close()
        self.thread.shutdown()

    @staticmethod
    def new_streams(prefix: str, rep: int, count: int) -> list[tuple[str, NewEvent]]:
        streams = [customer_stream(f"{prefix}-{rep}-{i}") for i in range(count)]
        return [(stream, new_event(stream, i)) for i, stream in enumerate(streams)]

    @staticmethod
    def one_stream(prefix: str, rep: int, count: int) -> list[tuple[str, NewEvent]]:
        stream = customer_stream(f"{prefix}-{rep}")
        return [(stream, new_event(stream, i)) for i in range(count)]

    async def baton_new_streams(self, rep: int, count: int) -> float:
        items = self.new_streams("bd", rep, count)
        started = time.perf_counter()
        for stream, event in items:
            await self.store.append(TENANT, stream, 0, [event])
        return time.perf_counter() - started

    async def baton_one_stream(self, rep: int, count: int) -> float:
        items = self.one_stream("bo", rep, count)
        started = time.perf_counter()
        for version, (stream, event) in enumerate(items):
            await self.store.append(TENANT, stream, version, [event])
        return time.perf_counter() - started

    def es_inserts(self, prefix: str, one: bool, threaded: bool) -> Once:
        async def once(rep: int, count: int) -> float:
            items = self.one_stream(prefix, rep, count) if one else self.new_streams(prefix, rep, count)
            stored = [stored_event(s, i + 1 if one else 1, e) for i, (s, e) in enumerate(items)]
            insert = self.recorder.insert_events
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            if threaded:
                for item in stored:
                    await loop.run_in_executor(self.thread, insert, [item])
            else:
                for item in stored:
                    insert([item])
            return time.perf_counter() - started

        return once

    async def baton_read(self, _rep: int, _count: int) -> float:
        started = time.perf_counter()
        got = await self.store.read_stream(TENANT, self.read_stream)
        elapsed = time.perf_counter() - started
        assert len(got) == self.args.read_events
        return elapsed

    async def es_read(self, _rep: int, _count: int) -> float:
        started = time.perf_counter()
        got = self.recorder.select_events(self.read_stream)
        elapsed = time.perf_counter() - started
        assert len(got) == self.args.read_events
        return elapsed

    async def run(self, report: Report) -> None:
        n, warm, repeat, r = self.args.events, self.args.warmup, self.args.repeat, self.args.read_events
        es = self.recorder is not None
        new: dict[str, Once] = {"Baton append, new streams": self.baton_new_streams}
        one: dict[str, Once] = {"Baton append, one stream": self.baton_one_stream}
        read: dict[str, Once] = {"Baton read_stream": self.baton_read}
        if es:
            new["eventsourcing insert, new streams"] = self.es_inserts("ed", one=False, threaded=False)
            new["eventsourcing insert in a thread, new streams"] = self.es_inserts("et", one=False, threaded=True)
            one["eventsourcing insert, one stream"] = self.es_inserts("eo", one=True, threaded=False)
            read["eventsourcing select_events"] = self.es_read
        got = await compare(new, n, warm, repeat)
        got |= await compare(one, n, warm, repeat)

        # The read: one stream of --read-events events, written by one append / insert.
        events = [new_event(self.read_stream, i) for i in range(r)]
        await self.store.append(TENANT, self.read_stream, 0, events)
        if es:
            self.recorder.insert_events([stored_event(self.read_stream, i + 1, e) for i, e in enumerate(events)])
        got |= await compare(read, r, 3, max(repeat, 15))
        b_new, b_one, b_read = (
            got["Baton append, new streams"],
            got["Baton append, one stream"],
            got["Baton read_stream"],
        )
        e_new, e_one = got.get("eventsourcing insert, new streams"), got.get("eventsourcing insert, one stream")
        e_new_thread = got.get("eventsourcing insert in a thread, new streams")
        e_read = got.get("eventsourcing select_events")

        in_thread = f"{ES_RECORDER}, called through a one-thread executor"
        report.store_rows += [
            Row(f"append 1 event to each of {n:,} new streams", b_new, ES_RECORDER, e_new),
            Row(f"append 1 event to each of {n:,} new streams", b_new, in_thread, e_new_thread),
            Row(f"append {n:,} events to one stream, 1 per append (expected version)", b_one, ES_RECORDER, e_one),
            Row(
                f"read one stream of {r:,} events (read_stream / select_events, median of {max(repeat, 15)} reads)",
                b_read,
                ES_RECORDER,
                e_read,
            ),
        ]
        report.parts.append((f"read one stream of {r:,} events: Baton read_stream", f"{r / b_read * 1000:.2f} ms"))
        if e_read:
            report.parts.append(("read the same: eventsourcing select_events", f"{r / e_read * 1000:.2f} ms"))
        await self.describe(report)

    async def describe(self, report: Report) -> None:
        # The store keeps its connection private: read its pragmas in its own worker thread.
        baton = await self.store._run(_pragmas)
        sample = new_event(customer_stream("sample"), 0)
        report.settings += [
            (
                "store: Baton SqliteEventStore",
                f"{baton}, busy_timeout {BUSY_TIMEOUT_S:.0f} s, BEGIN IMMEDIATE per append, "
                "one worker thread per store object (awaited from the event loop)",
            ),
            ("store: bytes per event", f"{len(sample.data) + len(sample.metadata)} (data + metadata), both sides"),
        ]
        if self.datastore is None:
            report.notes.append(NO_EVENTSOURCING)
            return
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            sync = cursor.fetchone()[0]
        report.settings.append(
            (
                f"store: {ES_RECORDER}",
                f"journal_mode={mode}, synchronous={sync} (2 = FULL), lock timeout {BUSY_TIMEOUT_S:.0f} s, "
                "deferred BEGIN per insert, called synchronously (and through a one-thread executor)",
            )
        )


# --- 2. the transport --------------------------------------------------------------------


def bus_settings(url: str) -> Settings:
    """Settings naming a stream and subjects of their own."""
    tag = unique_tag()
    return Settings(nats_url=url, nats_stream=f"BENCH_{tag}", subject_prefix=f"bench{tag}.events")


async def in_window(items: Iterable[T], send: Callable[[T], Awaitable[Any]], window: int) -> None:
    """Send every item with at most ``window`` sends awaiting their acknowledgement."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await send(item)

    await asyncio.gather(*(worker() for _ in range(window)))


def raw_consumer_config(name: str, settings: Settings) -> ConsumerConfig:
    """What ``runtime.bus.nats.consumer_config`` gives Baton's consumers."""
    return ConsumerConfig(
        durable_name=name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=settings.consumer_ack_wait_seconds,
        max_deliver=-1,
        max_ack_pending=1000,
        filter_subject=all_events(settings.subject_prefix),
    )


class Notes:
    """A trivial projection: counts a stream's notes."""

    def __init__(self, view: str = "bench-notes") -> None:
        self.view = view

    def wants(self, envelope: EventEnvelope) -> bool:
        return True

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        return {**doc, "notes": int(doc.get("notes", 0)) + 1}


class WatchedViews(SqliteViewStore):
    """A ``SqliteViewStore`` that notes when each event's document was saved."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.saved_at: dict[str, float] = {}
        self.expect: set[str] = set()
        self.all_saved = asyncio.Event()

    def watch(self, event_ids: Iterable[str]) -> None:
        """Wait (``all_saved``) for these events' documents to be saved."""
        self.expect = set(event_ids) - self.saved_at.keys()
        if self.expect:
            self.all_saved.clear()
        else:
            self.all_saved.set()

    async def save(
        self, view: str, tenant_id: str, key: str, doc: dict[str, Any], version: int, expected_version: int
    ) -> None:
        await super().save(view, tenant_id, key, doc, version, expected_version)
        event_id = str(doc.get("last_event_id"))
        self.saved_at[event_id] = time.perf_counter()
        self.expect.discard(event_id)
        if not self.expect:
            self.all_saved.set()

    async def wait(self, what: str) -> None:
        try:
            await asyncio.wait_for(self.all_saved.wait(), WAIT_SECONDS)
        except TimeoutError as exc:
            raise RuntimeError(f"{what}: {len(self.expect)} events not applied after {WAIT_SECONDS:.0f} s") from exc


class TransportBench:
    """Raw nats-py and Baton's publisher and consumer on one nats-server."""

    def __init__(self, args: argparse.Namespace, server: NatsServer, folder: Path) -> None:
        self.args = args
        self.server = server
        self.folder = folder
        self.store_path = folder / "baton-transport.db"
        self.records: list[RecordedEvent] = []
        self.payload = b""
        self.nc: Any = None
        self.js: Any = None
        self.broker = make_broker(bus_settings(server.url), "bench-publisher")
        self.filled: dict[tuple[str, int], Settings] = {}
        """The stream each publishing run filled, by (side, rep): the consumers read them."""

    async def open(self) -> None:
        count = self.args.events + self.args.warmup
        progress(f"transport: storing {count:,} events to publish")
        self.records = await self.stored_records(count)
        self.payload = b"x" * self.envelope_size()
        self.nc = await nats.connect(self.server.url, name="bench-raw")
        self.js = self.nc.jetstream()
        await self.broker.connect()

    async def close(self) -> None:
        await self.broker.stop()
        if self.nc is not None:
            await self.nc.close()

    async def stored_records(self, count: int) -> list[RecordedEvent]:
        """``count`` stored events, one per customer stream."""
        store = await SqliteEventStore.open(self.store_path)
        try:
            first = 0
            for i in range(count):
                stream = customer_stream(f"tr-{i}")
                result = await store.append(TENANT, stream, 0, [new_event(stream, i)])
                first = first or result.positions[0]
            records: list[RecordedEvent] = []
            while len(records) < count:
                records += await store.read_all(first - 1 + len(records), limit=1000)
            return records[:count]
        finally:
            await store.close()

    def envelope_size(self) -> int:
        return int(statistics.median(len(to_envelope(r).model_dump_json().encode()) for r in self.records[:200]))

    def pick(self, rep: int, count: int) -> Sequence[RecordedEvent]:
        warm = self.args.warmup
        return self.records[:count] if rep < 0 else self.records[warm : warm + count]

    async def new_stream(self, side: str, rep: int) -> Settings:
        settings = bus_settings(self.server.url)
        await ensure_stream(self.js, settings.nats_stream, settings.subject_prefix)
        self.filled[(side, rep)] = settings
        return settings

    def raw_publish(self, window: int, side: str) -> Once:
        async def once(rep: int, count: int) -> float:
            settings = await self.new_stream(side, rep)
            subject = event_subject(settings.subject_prefix, TENANT, "NoteAdded")

            async def send(_index: int) -> Any:
                headers = {MSG_ID_HEADER: str(uuid4())}
                return await self.js.publish(
                    subject, self.payload, stream=settings.nats_stream, headers=headers, timeout=5.0
                )

            started = time.perf_counter()
            if window == 1:
                for i in range(count):
                    await send(i)
            else:
                await in_window(range(count), send, window)
            return time.perf_counter() - started

        return once

    def baton_publish(self, window: int, side: str) -> Once:
        async def once(rep: int, count: int) -> float:
            publish = JetStreamPublisher(self.broker, await self.new_stream(side, rep))
            items = self.pick(rep, count)
            started = time.perf_counter()
            if window == 1:
                for record in items:
                    await publish(record)
            else:
                await in_window(items, publish, window)
            return time.perf_counter() - started

        return once

    async def raw_consume(self, rep: int, count: int) -> float:
        settings = self.filled[("raw", rep)]
        name = f"raw{unique_tag()}"
        started = time.perf_counter()
        sub = await self.js.pull_subscribe(
            all_events(settings.subject_prefix),
            durable=name,
            stream=settings.nats_stream,
            config=raw_consumer_config(name, settings),
        )
        got = 0
        while got < count:
            try:
                messages = await sub.fetch(batch=self.args.batch, timeout=1.0)
            except TimeoutError:
                continue
            for message in messages:
                await message.ack()
            got += len(messages)
        elapsed = time.perf_counter() - started
        await sub.unsubscribe()
        return elapsed

    async def faststream_consume(self, rep: int, count: int) -> float:
        """A FastStream subscriber wired as ``attach`` wires Baton's, whose handler only acks."""
        settings = self.filled[("baton", rep)]
        broker = make_broker(settings, "bench-faststream")
        done = asyncio.Event()
        acked = 0

        async def handle(msg: NatsMessage) -> None:
            nonlocal acked
            await msg.ack()
            acked += 1
            if acked >= count:
                done.set()

        name = f"fs{unique_tag()}"
        broker.subscriber(
            all_events(settings.subject_prefix),
            stream=JStream(name=settings.nats_stream, declare=False),
            durable=name,
            config=raw_consumer_config(name, settings),
            pull_sub=PullSub(batch_size=self.args.batch, timeout=1.0),
            ack_policy=AckPolicy.MANUAL,
        )(handle)
        await broker.connect()
        try:
            started = time.perf_counter()
            await broker.start()
            await asyncio.wait_for(done.wait(), WAIT_SECONDS)
            return time.perf_counter() - started
        finally:
            await broker.stop()

    async def baton_consume(self, rep: int, count: int) -> float:
        settings = self.filled[("baton", rep)]
        events = SqliteEventStore(self.store_path)
        views = WatchedViews(self.folder / f"baton-transport-views-{unique_tag()}.db")
        await views.ping()
        broker = make_broker(settings, "bench-consumer")
        consumer = ProjectionConsumer(f"bench{unique_tag()}", events, views, Notes(), now)
        attach(broker, consumer, settings, batch_size=self.args.batch)
        views.watch(str(r.event_id) for r in self.pick(rep, count))
        await broker.connect()
        try:
            started = time.perf_counter()
            await broker.start()
            await views.wait("transport consumer")
            return time.perf_counter() - started
        finally:
            await broker.stop()
            await views.close()
            await events.close()

    async def run(self, report: Report) -> None:
        n, warm, repeat, window, batch = (
            self.args.events,
            self.args.warmup,
            self.args.repeat,
            self.args.window,
            self.args.batch,
        )
        got = await compare(
            {
                "raw publish, one at a time": self.raw_publish(1, "raw"),
                "Baton publish, one at a time": self.baton_publish(1, "baton"),
                f"raw publish, {window} in flight": self.raw_publish(window, "raw-w"),
                f"Baton publish, {window} in flight": self.baton_publish(window, "baton-w"),
            },
            n,
            warm,
            repeat,
        )
        got |= await compare(
            {
                "raw pull consumer": self.raw_consume,
                "FastStream subscriber, ack only": self.faststream_consume,
                "Baton ProjectionConsumer": self.baton_consume,
            },
            n,
            warm,
            repeat,
        )
        raw_seq, baton_seq = got["raw publish, one at a time"], got["Baton publish, one at a time"]
        raw_win, baton_win = got[f"raw publish, {window} in flight"], got[f"Baton publish, {window} in flight"]
        raw_con, baton_con = got["raw pull consumer"], got["Baton ProjectionConsumer"]
        faststream_con = got["FastStream subscriber, ack only"]
        report.transport_rows += [
            Row("publish, await each PubAck, one at a time", baton_seq, RAW, raw_seq, unit="messages/s"),
            Row(f"publish, await each PubAck, {window} in flight", baton_win, RAW, raw_win, unit="messages/s"),
            Row(
                f"consume (pull, batch {batch}), Baton: ProjectionConsumer via attach, applying each event to a "
                "SqliteViewStore view",
                baton_con,
                f"{RAW}: fetch + ack",
                raw_con,
                unit="messages/s",
            ),
            Row(
                f"consume (pull, batch {batch}), Baton's FastStream wiring only: a handler that acks (no view)",
                faststream_con,
                f"{RAW}: fetch + ack",
                raw_con,
                unit="messages/s",
            ),
        ]
        await self.diagnose(report)
        self.describe(report)

    async def diagnose(self, report: Report) -> None:
        """The consumer's and publisher's parts alone: decoding, the view store, on_message."""
        n, warm, repeat, batch = self.args.events, self.args.warmup, self.args.repeat, self.args.batch
        bodies = [to_envelope(r).model_dump_json().encode() for r in self.records]
        report.parts += [
            ("publisher: to_envelope + JSON encoding, per event", f"{cpu_cost(self.encode) * 1e6:,.0f} µs"),
            (
                "consumer: EventEnvelope.model_validate_json, per event",
                f"{cpu_cost(lambda i: EventEnvelope.model_validate_json(bodies[i % len(bodies)])) * 1e6:,.0f} µs",
            ),
        ]
        events = SqliteEventStore(self.store_path)
        views = SqliteViewStore(self.folder / "baton-parts-views.db")
        try:
            await views.ping()
            hop = await repeated(
                "parts: worker-thread round trip (ping)", lambda _r, c: timed(views.ping, c), 500, 100, 1
            )
            report.parts.append(
                ("SQLite store call round trip (ping: executor hop + SELECT 1)", f"{1e6 / hop:,.0f} µs")
            )

            async def load_save(rep: int, count: int) -> float:
                items = self.pick(rep, count)
                started = time.perf_counter()
                for record in items:
                    key = f"{rep}:{record.stream}"
                    await views.load("parts", TENANT, key)
                    await views.save("parts", TENANT, key, {"notes": 1, "last_event_id": str(record.event_id)}, 1, 0)
                return time.perf_counter() - started

            async def on_message(rep: int, count: int) -> float:
                consumer = ProjectionConsumer(f"parts{unique_tag()}", events, views, Notes(f"parts-{rep}"), now)
                items = [to_envelope(r).model_dump_json().encode() for r in self.pick(rep, count)]
                subject = "bench.events"
                started = time.perf_counter()
                for start in range(0, len(items), batch):
                    await asyncio.gather(*(consumer.on_message(b, subject, 1) for b in items[start : start + batch]))
                return time.perf_counter() - started

            got = await compare(
                {"view store load + save": load_save, "ProjectionConsumer.on_message": on_message}, n, warm, repeat
            )
            views_rate, consumer_rate = got["view store load + save"], got["ProjectionConsumer.on_message"]
        finally:
            await views.close()
            await events.close()
        report.parts += [
            ("view store alone: load + save (insert) per event, one at a time", f"{views_rate:,.0f} events/s"),
            (
                f"ProjectionConsumer.on_message without the bus, batches of {batch} at once (as FastStream runs them)",
                f"{consumer_rate:,.0f} events/s",
            ),
        ]

    def encode(self, i: int) -> bytes:
        return to_envelope(self.records[i % len(self.records)]).model_dump_json().encode()

    def describe(self, report: Report) -> None:
        size = len(self.payload)
        report.settings += [
            (
                "bus: nats-server",
                "one local server (start_nats): JetStream file storage, sync_interval: always, both sides",
            ),
            ("bus: stream", "runtime.bus.jetstream.stream_config for both sides, a fresh stream per run"),
            (
                "bus: raw message",
                f"{size} bytes (the median Baton envelope), header Nats-Msg-Id, js.publish(stream=...)",
            ),
            (
                "bus: Baton message",
                f"JSON envelope of a stored NoteAdded (median {size} bytes), Nats-Msg-Id + 4 Baton-* headers + "
                "content-type, JetStreamPublisher -> FastStream broker.publish(stream=...)",
            ),
            (
                "bus: consumers",
                f"durable pull, explicit ack, max_ack_pending 1000, fetch batch {self.args.batch}, ack not awaited "
                "(both sides); FastStream runs the handlers of a fetched batch concurrently, the raw loop acks in turn",
            ),
            ("bus: Baton view store", "SqliteViewStore on its own file (WAL, synchronous=FULL), one save per event"),
        ]


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await call()
    return time.perf_counter() - started


def cpu_cost(work: Callable[[int], Any], count: int = 2000) -> float:
    """Median seconds per call of ``work`` over five rounds."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(count):
            work(i)
        rounds.append((time.perf_counter() - started) / count)
    return statistics.median(rounds)


# --- 3. end to end -----------------------------------------------------------------------


class TimedEventStore(SqliteEventStore):
    """A ``SqliteEventStore`` that notes when each event's append started."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.append_started: dict[str, float] = {}

    async def append(self, tenant_id: str, stream: str, expected_version: int, events: Sequence[NewEvent]) -> Any:
        started = time.perf_counter()
        for event in events:
            self.append_started[str(event.event_id)] = started
        return await super().append(tenant_id, stream, expected_version, events)


@dataclass
class E2ERun:
    """Per event, in seconds: the whole way, and its parts."""

    latencies: list[float]
    """append started -> view saved"""
    command: list[float]
    """append started -> appended and read back (``after_append`` called)"""
    publish: list[float]
    """appended -> PubAck received"""
    delivery: list[float]
    """PubAck received -> view saved (``mark_published`` runs meanwhile)"""
    outbox: list[float]
    """appended -> ``publish_now`` returned (published and marked published)"""


def customers_for(commands: int, in_flight: int) -> int:
    """Ten commands per customer, but at least one customer per command in flight."""
    return max(commands // 10, in_flight, 1)


class EndToEnd:
    """Commands through ``execute`` with the outbox's ``publish_now``, consumed into a view."""

    def __init__(self, args: argparse.Namespace, server: NatsServer, folder: Path) -> None:
        self.args = args
        self.settings = bus_settings(server.url)
        self.store = TimedEventStore(folder / "baton-e2e.db")
        self.views = WatchedViews(folder / "baton-e2e-views.db")
        self.broker = make_broker(self.settings, "bench-e2e")
        self.consumer = ProjectionConsumer("bench-e2e", self.store, self.views, Notes(), now)
        attach(self.broker, self.consumer, self.settings, batch_size=args.batch)
        self.publisher = JetStreamPublisher(self.broker, self.settings)
        self.relay = OutboxRelay(self.store, self.publish, now)
        self.runs: dict[int, list[E2ERun]] = {}
        self.appended_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}
        self.marked_at: dict[str, float] = {}

    async def publish(self, record: RecordedEvent) -> None:
        await self.publisher(record)
        self.acked_at[str(record.event_id)] = time.perf_counter()

    async def open(self) -> None:
        await self.store.ping()
        await self.views.ping()
        await self.broker.connect()
        await declare(self.broker, self.settings)
        await self.broker.start()

    async def close(self) -> None:
        await self.broker.stop()
        await self.store.close()
        await self.views.close()

    async def after_append(self, records: Sequence[RecordedEvent]) -> None:
        appended = time.perf_counter()
        for record in records:
            self.appended_at[str(record.event_id)] = appended
        await self.relay.publish_now(records)
        marked = time.perf_counter()
        for record in records:
            self.marked_at[str(record.event_id)] = marked

    def once(self, level: int) -> Once:
        """``count`` commands, ``level`` of them in flight at a time."""

        async def run(rep: int, count: int) -> float:
            customers = customers_for(count, level)
            ids: list[str] = []

            async def command(k: int) -> None:
                event_id = uuid4()
                ids.append(str(event_id))
                self.views.expect.add(str(event_id))
                self.views.all_saved.clear()
                outcome = await execute(
                    self.store,
                    TENANT,
                    customer_stream(f"e2e-{level}-{rep}-{k % customers}"),
                    initial=0,
                    fold=lambda state, _envelope, _event: state + 1,
                    decide=lambda _state: [(event_id, note(k))],
                    context=context(),
                    retries=5,
                    after_append=self.after_append,
                )
                assert len(outcome.recorded) == 1

            self.views.watch([])
            started = time.perf_counter()
            await in_window(range(count), command, level)
            await self.views.wait("end to end")
            if self.relay.last_error:
                raise RuntimeError(f"publishing failed: {self.relay.last_error}")
            if rep >= 0:
                self.record(level, ids)
            return max(self.views.saved_at[i] for i in ids) - started

        return run

    def record(self, level: int, ids: list[str]) -> None:
        saved, appended = self.views.saved_at, self.store.append_started
        self.runs.setdefault(level, []).append(
            E2ERun(
                latencies=[saved[i] - appended[i] for i in ids],
                command=[self.appended_at[i] - appended[i] for i in ids],
                publish=[self.acked_at[i] - self.appended_at[i] for i in ids],
                delivery=[saved[i] - self.acked_at[i] for i in ids],
                outbox=[self.marked_at[i] - self.appended_at[i] for i in ids],
            )
        )

    async def run(self, report: Report) -> None:
        n, levels = self.args.events, self.args.e2e_concurrency
        throughput = {
            level: await repeated(
                f"end to end, {level} in flight", self.once(level), n, self.args.warmup, self.args.repeat
            )
            for level in levels
        }

        def ms(values: Callable[[E2ERun], list[float]], p: float) -> list[str]:
            return [
                f"{statistics.median(percentile(values(run), p) for run in self.runs[level]) * 1000:,.2f} ms"
                for level in levels
            ]

        report.e2e_levels = list(levels)
        report.e2e += [
            ("commands (one event each)", [f"{n:,} over {customers_for(n, lv):,} customers" for lv in levels]),
            ("throughput, first command to last view saved", [f"{throughput[lv]:,.0f} events/s" for lv in levels]),
            ("latency, append started -> view saved, p50", ms(lambda r: r.latencies, 50)),
            ("latency, append started -> view saved, p99", ms(lambda r: r.latencies, 99)),
            ("part: append + read back in execute, p50", ms(lambda r: r.command, 50)),
            ("part: appended -> PubAck received (JetStreamPublisher), p50", ms(lambda r: r.publish, 50)),
            ("part: PubAck received -> consumer -> view saved, p50", ms(lambda r: r.delivery, 50)),
            ("part: PubAck received -> consumer -> view saved, p99", ms(lambda r: r.delivery, 99)),
            ("the producer's publish_now (publish + mark published), p50", ms(lambda r: r.outbox, 50)),
        ]


# --- machine facts, main -----------------------------------------------------------------


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def nats_server_version() -> str:
    try:
        out = subprocess.run(
            [nats_server_binary(), "--version"], check=False, capture_output=True, text=True, timeout=10
        )
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def commit_cost(folder: Path, commits: int = 300) -> float:
    """Seconds per bare SQLite commit of one small row (WAL, synchronous=FULL): the
    disk's fsync cost, which bounds every durable write measured here."""
    conn = sqlite3.connect(folder / "fsync-probe.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (v BLOB)")
        started = time.perf_counter()
        for _ in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (b"x" * 600,))
            conn.execute("COMMIT")
        return (time.perf_counter() - started) / commits
    finally:
        conn.close()


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


@dataclass
class Machine:
    """What may move between the start and the end of a run: the load and the disk."""

    load: str
    commit_seconds: float

    @classmethod
    def now(cls, folder: Path) -> Machine:
        return cls(load_average(), commit_cost(folder))


def machine_facts(report: Report, start: Machine, end: Machine) -> None:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    add = report.facts.append
    add(("CPUs (usable / total)", f"{usable} / {os.cpu_count()}"))
    add(("CPU", cpu_model()))
    add(("load average (1, 5, 15 min) at the start / at the end", f"{start.load} / {end.load}"))
    add(("platform", f"{platform.system()} {platform.release()} {platform.machine()}"))
    add(("Python", f"{platform.python_implementation()} {platform.python_version()}"))
    add(("SQLite", sqlite3.sqlite_version))
    add(
        (
            "bare SQLite commit of one row, WAL + synchronous=FULL (the disk's fsync), at the start / at the end",
            f"{start.commit_seconds * 1e6:,.0f} µs / {end.commit_seconds * 1e6:,.0f} µs",
        )
    )
    add(("nats-server", nats_server_version()))
    for package in ("nats-py", "faststream", "pydantic", "eventsourcing"):
        add((package, version_of(package)))


SECTIONS = ("store", "transport", "e2e")


async def run(args: argparse.Namespace, folder: Path) -> Report:
    started = time.perf_counter()
    report = Report(events=args.events, repeat=args.repeat)
    start = Machine.now(folder)
    server = start_nats(folder / "nats", log_path=folder / "nats" / "server.log")
    profiler = cProfile.Profile() if args.profile else None
    try:
        for section in (s for s in SECTIONS if s in args.only):
            progress(f"section: {section}")
            bench: StoreBench | TransportBench | EndToEnd
            if section == "store":
                bench = StoreBench(args, folder)
            elif section == "transport":
                bench = TransportBench(args, server, folder)
            else:
                bench = EndToEnd(args, server, folder)
            try:
                await bench.open()
                with profiling(profiler):
                    await bench.run(report)
            finally:
                await bench.close()
    finally:
        server.stop()
    machine_facts(report, start, Machine.now(folder))
    report.facts.append(("benchmark wall time", f"{time.perf_counter() - started:,.1f} s"))
    report.notes += [
        "Every append, publish and view save here is durable before it is acknowledged: one fsync each "
        "(SQLite WAL with synchronous=FULL, JetStream with sync_interval: always).",
        "Baton's append does more than the reference's insert: it checks event-id uniqueness, reads the stream "
        "head and hash-chains the event (SHA-256), in the same transaction.",
        "No OpenTelemetry SDK is configured in this process: Baton's consumer spans are no-ops.",
        "The sides of each comparison ran in turn within every repetition (interleaved), medians reported.",
    ]
    if args.profile:
        report.notes.append("This run was profiled (--profile): its timings are slowed down and not comparable.")
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.profile)
        print(text.getvalue(), file=sys.stderr)
    return report


@contextlib.contextmanager
def profiling(profiler: cProfile.Profile | None) -> Iterator[None]:
    if profiler is None:
        yield
        return
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.throughput",
        description="Baton's store, transport and pipeline throughput against eventsourcing and raw nats-py.",
    )
    parser.add_argument("--events", type=int, default=5_000, help="events per measured run (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per figure, median reported (default 3)")
    parser.add_argument("--warmup", type=int, default=200, help="events of each warm-up run (default 200)")
    parser.add_argument("--read-events", type=int, default=1_000, help="events of the stream read (default 1000)")
    parser.add_argument("--window", type=int, default=64, help="publishes in flight in the windowed runs")
    parser.add_argument("--batch", type=int, default=20, help="pull consumers' fetch batch (Baton's default: 20)")
    parser.add_argument(
        "--e2e-concurrency",
        type=int,
        nargs="+",
        default=[1, 16],
        help="commands in flight in the end-to-end runs, one figure column each (default: 1 16)",
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="run under cProfile and print the top N functions by own time to stderr (slows the run down)",
    )
    args = parser.parse_args(argv)
    if min(args.events, args.repeat, args.read_events, args.window, args.batch, *args.e2e_concurrency) < 1:
        parser.error("--events, --repeat, --read-events, --window, --batch and --e2e-concurrency must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not HAS_EVENTSOURCING:
        print(f"note: {NO_EVENTSOURCING}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="baton-throughput-") as tmp:
        report = asyncio.run(run(args, Path(tmp)))
    text = report.markdown()
    print()
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
