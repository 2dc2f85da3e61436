"""Benchmark of followup's promise deadlines: many pending promises, a batch due at once.

Run it from the repository root (not collected by pytest: it is not a test, and nothing
here asserts a timing)::

    python -m tests.benchmarks.promises [--pending 100000] [--due 1000] [--out FILE]
                                        [--data-dir DIR] [--writers 4]

What it measures, with the real code paths:

- A real ``SqliteEventStore``, ``SqliteViewStore`` and ``SqliteDeadlineStore`` in a
  temporary folder (or ``--data-dir``), laid out as followup lays them out in
  production (events in ``baton.db``, followup's views and deadlines in
  ``baton-followup-views.db``).
- A real ``ServiceRuntime`` from ``runtime.compose.build_runtime`` with the stores passed
  in. Its NATS broker is constructed (construction does not connect) but never started:
  there is no NATS in this benchmark. The ladder only uses ``runtime.store``,
  ``runtime.clock`` and ``runtime.settings``.
- The real ``PromiseLadder``: deadlines are scheduled by its ``react()`` with each
  ``CallbackPromised`` envelope read back from the store (what followup's consumer
  does), and fired by its ``run_timer`` loop on the real clock. ``TimedLadder`` only
  wraps ``fire_due`` to time each batch.
- ``after_append`` does nothing: in production it publishes the new events to NATS,
  whose consumer feeds ``EscalationRaised`` back to ``react()`` (the CRM notification and
  the level-2 deadline). That round trip is not measured here, so no level-2 deadline is
  scheduled.
- The notifier is a stand-in that only records calls: webhook delivery is not what is
  measured (it has its own durable queue and never blocks the ladder).

Steps:

1. Set-up: a manager, a supervisor and an agent in the directory stream; ``--pending``
   promises due 1 to 8 days ahead, then ``--due`` promises all due at the same instant
   T shortly after set-up ends. Each promise is one customer stream with
   ``ContactOpened`` + ``OwnerAssigned`` + ``CallbackPromised`` in one append (in
   production these are two commands; one append keeps set-up time reasonable), written
   by ``--writers`` event-store objects concurrently.
2. Deadline check cost: ``deadlines.due("followup-promises", now, limit=500)`` when
   nothing is due, median of many calls, at 1,000 pending promises (early in set-up) and
   at full size; the same query on a read-only SQLite connection, and its query plan;
   and the ladder's whole check per tick (``fire_due()`` finding nothing, whatever
   timers it asks). The due batch is previewed with ``due(..., T)`` before T (a read).
3. Escalation lag: ``run_timer`` runs across T; for each due promise, lag =
   ``recorded_at`` of its ``EscalationRaised`` - its due time. The streams are read back
   to check exactly one ``PromiseBroken`` and one level-1 ``EscalationRaised`` (to the
   supervisor) per due promise and none for the pending ones.
4. Memory: RSS of this process before and after the due batch, its peak during the
   firing (sampled) and over the whole run. Set-up shares the process, so the lifetime
   peak includes it; the growth during the firing phase is followup's own cost.

Set-up is bound by fsync (each append and each scheduled deadline is one durable
transaction): about 100,000 promises in 5 to 6 minutes on a 2-core virtual machine.
Point ``--data-dir`` at the disk whose cost you want measured (the default folder is the
system's temporary folder).

The process exits with status 1 when the escalations do not check out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import platform
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from contracts.events import (
    AgentRegistered,
    AgentRole,
    CallbackPromised,
    ContactOpened,
    EscalationRaised,
    OwnerAssigned,
    OwnershipCause,
)
from runtime.compose import Clock, build_runtime, utc_now
from runtime.config import Settings
from runtime.domain.directory import DIRECTORY_STREAM
from runtime.events import EventContext, customer_stream, encode_event, payload_of, to_envelope
from runtime.policy import load_policies
from runtime.store.port import Deadline, DeadlineStore, EventStore, RecordedEvent, ViewStore
from runtime.store.sqlite import SqliteEventStore, SqliteViewStore
from services.followup.ladder import PROMISE_TIMER, PromiseLadder

TENANT = "bench"
MANAGER, SUPERVISOR, AGENT = "mgr-bench", "sup-bench", "agent-bench"
SMALL = 1_000
"""The pending count of the early deadline-check measurement."""
DUE_LIMIT = 500
"""The batch size ``PromiseLadder.fire_due`` asks for."""
PENDING_FROM, PENDING_SPREAD = timedelta(days=1), timedelta(days=7)
"""Pending promises are due between 1 and 8 days after set-up starts."""

DUE_SQL = (
    "SELECT timer, tenant_id, key, due_at, data FROM deadlines "
    "WHERE timer = ? AND due_at <= ? ORDER BY due_at, tenant_id, key LIMIT ?"
)
"""The query of ``SqliteDeadlineStore.due`` (copied: the plan is explained on it)."""


# --- stand-ins ------------------------------------------------------------------------


@dataclass
class RecordingNotifier:
    """Stands in for followup's ``Notifier``: records calls, sends nothing.

    Notifications are not what this benchmark measures; with no bus, ``react()`` never
    sees ``EscalationRaised``, so normally nothing is recorded at all.
    """

    calls: list[tuple[str, str, str]] = field(default_factory=list)

    async def notify(self, tenant_id: str, notification_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Remember the call."""
        self.calls.append((tenant_id, notification_id, kind))


async def publish_nothing(records: Sequence[RecordedEvent]) -> None:
    """``after_append`` without NATS: in production it publishes ``records`` at once."""


class TimedLadder(PromiseLadder):
    """The real ``PromiseLadder``; ``fire_due`` is timed per batch and otherwise unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[float, float, int]] = []
        """(start, end, fired) of every ``fire_due`` call that fired something."""
        self.expected = 0
        self.all_fired = asyncio.Event()
        """Set once ``fired_total`` reaches ``expected``."""

    async def fire_due(self, limit: int = DUE_LIMIT) -> int:
        """``PromiseLadder.fire_due``, timed."""
        start = time.perf_counter()
        fired = await super().fire_due(limit)
        if fired:
            self.batches.append((start, time.perf_counter(), fired))
        if self.expected and self.fired_total >= self.expected:
            self.all_fired.set()
        return fired


# --- measuring helpers ----------------------------------------------------------------


def rss_bytes() -> int | None:
    """This process's resident set size now (Linux), or None where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size since it started."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB elsewhere


def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.1f} MiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


def timestamp(moment: datetime) -> str:
    """A due time as the SQLite deadline store keeps it (UTC, microseconds)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class RssSampler:
    """Samples RSS every ``interval`` seconds while running; keeps the highest."""

    def __init__(self, interval: float = 0.02) -> None:
        self._interval = interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.peak: int | None = None

    def _sample(self) -> None:
        now = rss_bytes()
        if now is not None and (self.peak is None or now > self.peak):
            self.peak = now

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        self._sample()


@dataclass(frozen=True)
class CheckCost:
    """The cost of one deadline check with nothing due, at one size."""

    promises: int
    deadline_rows: int
    """Rows of the ``followup-promises`` timer."""
    due_median: float
    due_p90: float
    sql_median: float
    tick_median: float
    """``PromiseLadder.fire_due()`` finding nothing: the ladder's whole check per tick."""
    plan: str


def bare_query(deadline_db: Path, calls: int) -> tuple[float, str]:
    """The median time of the deadline query on a read-only connection, and its plan."""
    samples = []
    with contextlib.closing(sqlite3.connect(f"{deadline_db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        params = (PROMISE_TIMER, timestamp(utc_now()), DUE_LIMIT)
        plan = "; ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + DUE_SQL, params))
        for _ in range(calls):
            params = (PROMISE_TIMER, timestamp(utc_now()), DUE_LIMIT)
            started = time.perf_counter()
            conn.execute(DUE_SQL, params).fetchall()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples), plan


def deadline_rows_by_timer(deadline_db: Path) -> dict[str, int]:
    """How many deadlines each timer holds (followup's timers and any other)."""
    with contextlib.closing(sqlite3.connect(f"{deadline_db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT timer, COUNT(*) FROM deadlines GROUP BY timer ORDER BY timer").fetchall()
    return {timer: int(n) for timer, n in rows}


def event_totals(events_db: Path) -> dict[str, int]:
    """How many ``PromiseBroken`` and ``EscalationRaised`` the whole store holds."""
    with contextlib.closing(sqlite3.connect(f"{events_db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT event_type, COUNT(*) FROM events "
            "WHERE event_type IN ('PromiseBroken', 'EscalationRaised') GROUP BY event_type"
        ).fetchall()
    return {kind: int(n) for kind, n in rows}


async def measure_check(
    ladder: PromiseLadder, deadlines: DeadlineStore, deadline_db: Path, promises: int, calls: int
) -> CheckCost:
    """Time ``deadlines.due`` (through the store's worker thread, as the ladder calls it),
    the bare query on a read-only connection and the ladder's ``fire_due``, with nothing due."""
    for _ in range(20):  # warm the connection and the page cache
        await deadlines.due(PROMISE_TIMER, utc_now(), limit=DUE_LIMIT)
    samples = []
    for _ in range(calls):
        now = utc_now()
        started = time.perf_counter()
        found = await deadlines.due(PROMISE_TIMER, now, limit=DUE_LIMIT)
        samples.append(time.perf_counter() - started)
        if found:
            raise RuntimeError(f"{len(found)} deadlines are due during the nothing-due measurement")
    sql_median, plan = bare_query(deadline_db, calls)
    ticks = []
    for _ in range(calls):
        started = time.perf_counter()
        fired = await ladder.fire_due()
        ticks.append(time.perf_counter() - started)
        if fired:
            raise RuntimeError(f"{fired} deadlines fired during the nothing-due measurement")
    return CheckCost(
        promises=promises,
        deadline_rows=await deadlines.count(PROMISE_TIMER),
        due_median=statistics.median(samples),
        due_p90=percentile(samples, 90),
        sql_median=sql_median,
        tick_median=statistics.median(ticks),
        plan=plan,
    )


# --- set-up ---------------------------------------------------------------------------


def context(clock: Clock, actor: str) -> EventContext:
    return EventContext(actor=actor, occurred_at=clock(), correlation_id=uuid4())


async def register_staff(store: EventStore, clock: Clock) -> None:
    """The manager, the supervisor (reporting to the manager) and the agent (to the supervisor)."""
    staff = [
        AgentRegistered(agent_id=MANAGER, name="Manager", role=AgentRole.MANAGER),
        AgentRegistered(agent_id=SUPERVISOR, name="Supervisor", role=AgentRole.SUPERVISOR, supervisor_id=MANAGER),
        AgentRegistered(agent_id=AGENT, name="Agent", supervisor_id=SUPERVISOR),
    ]
    ctx = context(clock, f"api:{TENANT}")
    await store.append(TENANT, DIRECTORY_STREAM, 0, [encode_event(e, DIRECTORY_STREAM, ctx) for e in staff])


def customer_id_of(index: int) -> str:
    return f"cust-{index:07d}"


async def create_promise(store: EventStore, ladder: PromiseLadder, clock: Clock, index: int, due_at: datetime) -> None:
    """One customer with an open contact, an owner and a promise; its deadlines scheduled
    by ``ladder.react`` with the ``CallbackPromised`` envelope as stored."""
    stream = customer_stream(customer_id_of(index))
    ctx = context(clock, f"agent:{AGENT}")
    opened_id = uuid4()
    opened = ContactOpened(contact_id="k1", agent_id=AGENT)
    owner = OwnerAssigned(
        agent_id=AGENT, previous_agent_id=None, cause=OwnershipCause.FIRST_CONTACT, cause_event_id=str(opened_id)
    )
    promised = CallbackPromised(
        promise_id=f"pr-{index:07d}",
        contact_id="k1",
        promised_by=AGENT,
        due_at=due_at,
        what="Call back with the refund status",
    )
    events = [
        encode_event(opened, stream, ctx, opened_id),
        encode_event(owner, stream, ctx),
        encode_event(promised, stream, ctx),
    ]
    await store.append(TENANT, stream, 0, events)
    (record,) = await store.read_stream(TENANT, stream, after_version=2)
    envelope = to_envelope(record)
    await ladder.react(envelope, payload_of(envelope))


class Progress:
    """Prints set-up progress every 10 %."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self._next = total, 0, 1
        self.started = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        if self.done * 10 >= self._next * self.total:
            elapsed = time.perf_counter() - self.started
            print(
                f"  set-up {self.done:>9,}/{self.total:,} promises ({self._next * 10:>3}%) "
                f"{elapsed:7.1f} s, {self.done / elapsed:,.0f}/s",
                flush=True,
            )
            while self.done * 10 >= self._next * self.total:
                self._next += 1


async def create_promises(
    writers: Sequence[EventStore],
    ladder: PromiseLadder,
    clock: Clock,
    indices: range,
    due_of: Callable[[int], datetime],
    progress: Progress,
) -> float:
    """Create the promises ``indices`` with one task per writer; returns the seconds taken."""
    started = time.perf_counter()
    queue: Iterator[int] = iter(indices)

    async def work(store: EventStore) -> None:
        for index in queue:  # shared: each index is taken by one writer
            await create_promise(store, ladder, clock, index, due_of(index))
            progress.tick()

    await asyncio.gather(*(work(store) for store in writers))
    return time.perf_counter() - started


# --- the run --------------------------------------------------------------------------


@dataclass
class Report:
    """Every figure, in the order printed."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    costs: list[CheckCost] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, figure: str, value: str) -> None:
        self.rows.append((figure, value))

    def markdown(self, pending: int, due: int) -> str:
        lines = [
            f"## followup promise deadlines: {pending:,} pending, {due:,} due at the same instant",
            "",
            'Deadline check with nothing due (`deadlines.due("followup-promises", now, limit=500)`):',
            "",
            "| pending promises | followup-promises rows | due() median | due() p90 | bare query median "
            "| ladder fire_due() median | query plan |",
            "|---:|---:|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {c.promises:,} | {c.deadline_rows:,} | {us(c.due_median)} | {us(c.due_p90)} "
            f"| {us(c.sql_median)} | {us(c.tick_median)} | `{c.plan}` |"
            for c in self.costs
        ]
        lines += ["", "| figure | value |", "|---|---|"]
        lines += [f"| {figure} | {value} |" for figure, value in self.rows]
        if self.problems:
            lines += ["", "**Check failed:**", ""] + [f"- {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


@dataclass
class SetUp:
    """What set-up produced: the due instant and how long each part took."""

    small: int
    due_at: datetime
    rss_start: int | None
    seconds_pending: float
    seconds_due: float
    seconds_total: float
    rss_small: int | None


@dataclass
class Firing:
    """What happened across T."""

    deadline_rows_before: int
    """Rows of the ``followup-promises`` timer."""
    rows_by_timer: dict[str, int]
    preview_seconds: float
    preview_rows: int
    all_fired_after: float | None
    rss_before: int | None
    rss_after: int | None
    rss_peak: int | None


class Bench:
    """One run: the stores, the runtime and the ladder as followup composes them."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.pending: int = args.pending
        self.due: int = args.due
        self.clock: Clock = utc_now
        self.rng = random.Random(20240601)
        self.report = Report()
        self.settings = Settings(
            data_dir=data_dir,
            store_url="",
            policy_file="",
            reminder_lead="PT10M",
            escalation_level2_after="PT30M",
            timer_interval_seconds=args.timer_interval,
        )
        self.events_db = data_dir / "baton.db"
        self.views_db = data_dir / "baton-followup-views.db"  # followup keeps views and deadlines here
        self.store = SqliteEventStore(self.events_db, clock=self.clock)
        self.views = SqliteViewStore(self.views_db, clock=self.clock)
        # The broker is constructed (no connection) and never started: no NATS here.
        self.runtime = build_runtime("followup", self.settings, clock=self.clock, store=self.store, views=self.views)
        self.deadlines = self.runtime.open_deadlines()  # SqliteDeadlineStore on the views file, as in production
        self.notifier = RecordingNotifier()
        self.ladder = TimedLadder(
            self.runtime,
            self.deadlines,
            load_policies(self.settings),
            self.notifier,
            after_append=publish_nothing,
            timer_interval=self.settings.timer_interval_seconds,
        )
        self.writers: list[EventStore] = [
            SqliteEventStore(self.events_db, clock=self.clock) for _ in range(args.writers)
        ]

    def _databases(self) -> list[EventStore | ViewStore | DeadlineStore]:
        return [*self.writers, self.store, self.views, self.deadlines]

    async def close(self) -> None:
        for db in self._databases():
            await db.close()

    async def set_up(self) -> SetUp:
        """Staff, the pending promises (with the deadline check at two sizes), the due batch."""
        rss_start = rss_bytes()
        for db in self._databases():
            await db.ping()  # create the files and schema now, not in the first timed call
        await register_staff(self.store, self.clock)
        start = self.clock()
        pending_due = [start + PENDING_FROM + PENDING_SPREAD * self.rng.random() for _ in range(self.pending)]
        progress = Progress(self.pending + self.due)
        print(f"set-up: {self.pending:,} pending promises, then {self.due:,} due at one instant", flush=True)
        small = min(SMALL, self.pending)
        create = self._create
        seconds_small = await create(range(small), pending_due.__getitem__, progress)
        self.report.costs.append(
            await measure_check(self.ladder, self.deadlines, self.views_db, small, self.args.check_calls)
        )
        rss_small = rss_bytes()
        seconds_rest = await create(range(small, self.pending), pending_due.__getitem__, progress)
        if self.pending > small:
            self.report.costs.append(
                await measure_check(self.ladder, self.deadlines, self.views_db, self.pending, self.args.check_calls)
            )
        seconds_pending = seconds_small + seconds_rest
        # All due at T: leave time to create them (at the rate seen so far) and start the timer.
        rate = self.pending / seconds_pending if seconds_pending > 0 else 1_000.0
        margin = max(3.0, 1.5 * self.due / rate + 2.0)
        due_at = self.clock() + timedelta(seconds=margin)
        seconds_due = await create(range(self.pending, self.pending + self.due), lambda _: due_at, progress)
        seconds_total = time.perf_counter() - progress.started
        print(f"set-up done in {seconds_total:,.1f} s; {self.due:,} promises due at +{margin:.1f} s", flush=True)
        return SetUp(small, due_at, rss_start, seconds_pending, seconds_due, seconds_total, rss_small)

    async def _create(self, indices: range, due_of: Callable[[int], datetime], progress: Progress) -> float:
        return await create_promises(self.writers, self.ladder, self.clock, indices, due_of, progress)

    async def fire(self, due_at: datetime) -> Firing:
        """Run the ladder's timer across T until every due promise fired (or the timeout)."""
        rows_before = await self.deadlines.count(PROMISE_TIMER)
        rows_by_timer = deadline_rows_by_timer(self.views_db)
        preview = []  # due() as it will be at T, asked before T: a read, it fires nothing
        rows: list[Deadline] = []
        for _ in range(5):
            started = time.perf_counter()
            rows = await self.deadlines.due(PROMISE_TIMER, due_at, limit=DUE_LIMIT)
            preview.append(time.perf_counter() - started)
        slack = (due_at - self.clock()).total_seconds()
        if slack < 0:
            self.report.problems.append(f"set-up overran the due time by {-slack:.1f} s: the lag includes it")
        gc.collect()
        rss_before = rss_bytes()
        sampler = RssSampler()
        sampler.start()
        self.ladder.expected = self.due
        stop = asyncio.Event()
        timer = asyncio.create_task(self.ladder.run_timer(stop))
        wait = (due_at - self.clock()).total_seconds() + self.args.timeout
        all_fired_after: float | None = None
        try:
            await asyncio.wait_for(self.ladder.all_fired.wait(), timeout=max(wait, 1.0))
            all_fired_after = (self.clock() - due_at).total_seconds()
        except TimeoutError:
            self.report.problems.append(f"only {self.ladder.fired_total:,} of {self.due:,} fired in time")
        await asyncio.sleep(3 * self.settings.timer_interval_seconds)  # a few idle ticks: nothing else fires
        stop.set()
        await timer
        await sampler.stop()
        return Firing(
            rows_before,
            rows_by_timer,
            statistics.median(preview),
            len(rows),
            all_fired_after,
            rss_before,
            rss_bytes(),
            sampler.peak,
        )

    async def verify(self, due_at: datetime, rows_before: int) -> tuple[list[float], dict[str, int]]:
        """Read the streams back: one PromiseBroken and one level-1 escalation to the
        supervisor per due promise, nothing for the pending ones. Returns the lags."""
        problems = self.report.problems
        lags: list[float] = []
        for index in range(self.pending, self.pending + self.due):
            customer = customer_id_of(index)
            records = await self.store.read_stream(TENANT, customer_stream(customer))
            kinds = Counter(r.event_type for r in records)
            raised = [r for r in records if r.event_type == "EscalationRaised"]
            if kinds["PromiseBroken"] != 1 or len(raised) != 1:
                problems.append(f"{customer}: {kinds['PromiseBroken']} PromiseBroken, {len(raised)} EscalationRaised")
                continue
            event = payload_of(to_envelope(raised[0]))
            if not isinstance(event, EscalationRaised) or (event.level, event.to_agent_id) != (1, SUPERVISOR):
                problems.append(f"{customer}: escalated wrongly: {event!r}")
            lags.append((raised[0].recorded_at - due_at).total_seconds())
        totals = event_totals(self.events_db)
        for kind in ("PromiseBroken", "EscalationRaised"):
            if totals.get(kind, 0) != self.due:
                problems.append(f"{totals.get(kind, 0):,} {kind} in the whole store, expected {self.due:,}")
        for index in self.rng.sample(range(self.pending), min(200, self.pending)):
            records = await self.store.read_stream(TENANT, customer_stream(customer_id_of(index)))
            if [r.event_type for r in records] != ["ContactOpened", "OwnerAssigned", "CallbackPromised"]:
                problems.append(f"pending {customer_id_of(index)} changed: {[r.event_type for r in records]}")
        rows_after = await self.deadlines.count(PROMISE_TIMER)
        if rows_after != rows_before - self.due:
            problems.append(f"{rows_before:,} deadline rows before, {rows_after:,} after {self.due:,} fired")
        return lags, totals

    def fill_report(
        self, setup: SetUp, firing: Firing, lags: list[float], totals: dict[str, int], started: float
    ) -> None:
        add = self.report.add
        costs = self.report.costs
        rate = (self.pending + self.due) / setup.seconds_total
        add("set-up: pending promises (customer streams)", f"{self.pending:,} in {setup.seconds_pending:,.1f} s")
        add("set-up: due promises", f"{self.due:,} in {setup.seconds_due:,.1f} s")
        add("set-up: total (incl. deadline checks)", f"{setup.seconds_total:,.1f} s ({rate:,.0f} promises/s)")
        add(
            "deadline rows before firing, by timer",
            ", ".join(f"{timer}: {n:,}" for timer, n in firing.rows_by_timer.items()),
        )
        if len(costs) == 2:
            ratio = costs[1].due_median / costs[0].due_median
            sql_ratio = costs[1].sql_median / costs[0].sql_median
            tick_ratio = costs[1].tick_median / costs[0].tick_median
            add(
                f"deadline check, {costs[1].promises:,} vs {costs[0].promises:,} pending (median)",
                f"due() x{ratio:.2f}, bare query x{sql_ratio:.2f}, ladder fire_due() x{tick_ratio:.2f}",
            )
        add(f"due() with the batch due ({firing.preview_rows} rows; asked before T)", ms(firing.preview_seconds))
        batches = self.ladder.batches
        fire_seconds = sum(end - start for start, end, _ in batches)
        add(
            f"fire_due calls for the {self.due:,} due (limit {DUE_LIMIT})",
            ", ".join(f"{n} in {ms(end - start)}" for start, end, n in batches) or "none",
        )
        if fire_seconds > 0:
            add("firing throughput", f"{self.ladder.fired_total / fire_seconds:,.0f} promises/s")
        add("escalations checked (level 1, to the supervisor)", f"{len(lags):,} of {self.due:,}")
        if lags:
            for p in (50, 95, 99):
                add(f"escalation lag p{p}", ms(percentile(lags, p)))
            add("escalation lag max = time from T until all escalated", ms(max(lags)))
        if firing.all_fired_after is not None:
            add("time from T until the ladder counted all fired", ms(firing.all_fired_after))
        add("timer interval", ms(self.settings.timer_interval_seconds))
        add(
            "PromiseBroken / EscalationRaised in the whole store",
            f"{totals.get('PromiseBroken', 0):,} / {totals.get('EscalationRaised', 0):,}",
        )
        add("notifications recorded (stand-in)", f"{len(self.notifier.calls)} (no bus: see the module docstring)")
        add("RSS at start", mib(setup.rss_start))
        add(f"RSS after {setup.small:,} pending", mib(setup.rss_small))
        add("RSS before the due batch (after set-up, gc)", mib(firing.rss_before))
        add("RSS after the due batch", mib(firing.rss_after))
        if firing.rss_before is not None and firing.rss_after is not None:
            add("RSS growth during the firing phase", mib(firing.rss_after - firing.rss_before))
        if firing.rss_before is not None and firing.rss_peak is not None:
            add(
                "RSS peak during the firing phase (sampled every 20 ms)",
                f"{mib(firing.rss_peak)} (+{mib(firing.rss_peak - firing.rss_before)})",
            )
        add("peak RSS of the process (incl. set-up)", mib(peak_rss_bytes()))
        machine_facts(self.report, self.args.writers)
        add("benchmark wall time", f"{time.perf_counter() - started:,.1f} s")


def machine_facts(report: Report, writers: int) -> None:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    report.add("machine: CPUs (usable / total)", f"{usable} / {os.cpu_count()}")
    if hasattr(os, "getloadavg"):
        report.add("machine: load average at the end (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    report.add("machine: platform", f"{platform.system()} {platform.release()} {platform.machine()}")
    report.add("machine: Python", platform.python_version())
    report.add("machine: SQLite", sqlite3.sqlite_version)
    report.add("set-up writers (event-store objects)", str(writers))


async def run(args: argparse.Namespace, data_dir: Path) -> Report:
    """Set up, fire, verify; every figure in the returned report."""
    started = time.perf_counter()
    bench = Bench(args, data_dir)
    try:
        setup = await bench.set_up()
        firing = await bench.fire(setup.due_at)
        lags, totals = await bench.verify(setup.due_at, firing.deadline_rows_before)
        bench.fill_report(setup, firing, lags, totals, started)
    finally:
        await bench.close()
    return bench.report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.promises",
        description="followup promise deadlines: check cost, escalation lag and memory.",
    )
    parser.add_argument("--pending", type=int, default=100_000, help="promises due days ahead (default 100000)")
    parser.add_argument("--due", type=int, default=1_000, help="promises due at the same instant (default 1000)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--data-dir", type=Path, help="folder for the stores (default: a temporary folder)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent event-store objects in set-up")
    parser.add_argument("--check-calls", type=int, default=2_000, help="timed deadline checks per size")
    parser.add_argument("--timer-interval", type=float, default=0.2, help="the ladder's timer interval (s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds after T to wait for all escalations")
    args = parser.parse_args(argv)
    if args.pending < 1 or args.due < 1 or args.writers < 1 or args.check_calls < 1:
        parser.error("--pending, --due, --writers and --check-calls must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.ExitStack() as stack:
        if args.data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="baton-bench-")))
        else:
            data_dir = args.data_dir
            if (data_dir / "baton.db").exists():
                print(f"error: {data_dir} already holds a store; give an empty folder", file=sys.stderr)
                return 2
            data_dir.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run(args, data_dir))
    text = report.markdown(args.pending, args.due)
    print()
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
