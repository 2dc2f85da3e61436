"""Replay benchmark: ``python -m tests.benchmarks.replay [--total N] [--big N] [--dir PATH]``.

Measures on the SQLite event store (the embedded store of ``make run``):

1. replaying one customer with ``--big`` (10,000) events: read the stream, decode every
   event and fold it with ``runtime.domain.customer.evolve`` (``runtime.commanding.load``,
   the path every command takes), and the audit replay (``runtime.audit.history.replay``)
   on top; the issue's bar is under one second;
2. the time to read one ordinary customer (100 events) when the store holds 10 thousand
   and then ``--total`` (1 million) events of other customers: it must not grow with
   the size of the store (the read is an index range scan on (tenant, stream, version)).

Events go in through the store's own ``append`` (so every one is hash-chained as in
production), in batches of one customer's events per append. Payloads are real
encoded events, built from templates so generating a million takes seconds, not hours.
This is a script, not a test: it prints a table and exits non-zero if the replay bar
is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from contracts.events import (
    AgentTarget,
    CallbackCompleted,
    CallbackPromised,
    ContactOpened,
    Event,
    HandoffAccepted,
    HandoffOffered,
    HandoffReason,
    HandoffRequested,
    NoteAdded,
    OwnerAssigned,
    OwnershipCause,
)
from runtime.audit.history import replay
from runtime.commanding import load
from runtime.domain.customer import CustomerState, evolve
from runtime.events import EventContext, customer_stream, encode_event, to_envelope
from runtime.store.port import NewEvent
from runtime.store.sqlite import SqliteEventStore

TENANT = "bench"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
PER_CUSTOMER = 100  # events of each "other" customer, and of the probe customer
REPLAY_BAR_S = 1.0


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _metadata(customer: str, actor: str, moment: datetime) -> bytes:
    return _json(
        {
            "actor": actor,
            "causation_id": None,
            "correlation_id": str(uuid4()),
            "customer_id": customer,
            "occurred_at": moment.isoformat(),
            "trace_context": {},
        }
    )


def ordinary_customer(customer: str, count: int) -> list[NewEvent]:
    """A customer's stream built from templates: a contact, its owner, then notes."""
    agent = f"agent-{hash(customer) % 500}"
    events = [
        NewEvent(
            uuid4(),
            "ContactOpened",
            1,
            _json({"agent_id": agent, "channel": "phone", "contact_id": "k1", "subject": None}),
            _metadata(customer, f"agent:{agent}", T0),
        ),
        NewEvent(
            uuid4(),
            "OwnerAssigned",
            1,
            _json(
                {
                    "agent_id": agent,
                    "cause": "first_contact",
                    "cause_event_id": "x",
                    "handoff_id": None,
                    "previous_agent_id": None,
                }
            ),
            _metadata(customer, f"agent:{agent}", T0),
        ),
    ]
    for i in range(count - 2):
        text = f"Note {i}: customer called about invoice {i * 7 % 1000}; details checked and recorded."
        events.append(
            NewEvent(
                uuid4(),
                "NoteAdded",
                1,
                _json({"author_id": agent, "contact_id": "k1", "note_id": f"n{i}", "text": text}),
                _metadata(customer, f"agent:{agent}", T0 + timedelta(seconds=i)),
            )
        )
    return events


def big_customer(customer: str, count: int) -> list[NewEvent]:
    """A long, realistic history: contacts, notes, hand-offs, promises kept (typed events)."""
    stream = customer_stream(customer)
    out: list[NewEvent] = []
    owner, moment, n = "ana", T0, 0

    def add(event: Event, actor: str) -> None:
        nonlocal moment
        moment += timedelta(seconds=30)
        ctx = EventContext(actor=actor, occurred_at=moment, correlation_id=uuid4())
        out.append(encode_event(event, stream, ctx))

    add(ContactOpened(contact_id="k0", agent_id=owner), f"agent:{owner}")
    add(
        OwnerAssigned(agent_id=owner, previous_agent_id=None, cause=OwnershipCause.FIRST_CONTACT, cause_event_id="-"),
        "x",
    )
    while len(out) < count:
        n += 1
        add(NoteAdded(contact_id="k0", note_id=f"n{n}", author_id=owner, text=f"Note {n} about the case"), "a")
        if n % 10 == 0:
            add(
                CallbackPromised(
                    promise_id=f"p{n}", contact_id="k0", promised_by=owner, due_at=moment + timedelta(hours=1), what="x"
                ),
                f"agent:{owner}",
            )
            add(CallbackCompleted(promise_id=f"p{n}", agent_id=owner, outcome="done"), f"agent:{owner}")
        if n % 50 == 0:
            new = "ben" if owner == "ana" else "ana"
            target = AgentTarget(agent_id=new)
            add(
                HandoffRequested(
                    handoff_id=f"h{n}",
                    from_agent_id=owner,
                    target=target,
                    reason=HandoffReason.CAPACITY,
                    recap="r",
                    customer_informed=True,
                ),
                f"agent:{owner}",
            )
            add(HandoffOffered(handoff_id=f"h{n}", agent_id=new, attempt=1, expires_at=moment), "system:routing")
            add(HandoffAccepted(handoff_id=f"h{n}", agent_id=new), f"agent:{new}")
            add(
                OwnerAssigned(
                    agent_id=new,
                    previous_agent_id=owner,
                    cause=OwnershipCause.HANDOFF_ACCEPTED,
                    cause_event_id="-",
                    handoff_id=f"h{n}",
                ),
                f"agent:{new}",
            )
            owner = new
    return out[:count]


async def append_all(store: SqliteEventStore, customer: str, events: list[NewEvent], batch: int = 1000) -> None:
    stream = customer_stream(customer)
    version = await store.stream_version(TENANT, stream)
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        await store.append(TENANT, stream, version, chunk)
        version += len(chunk)


async def fill_to(store: SqliteEventStore, total: int, have: int, next_customer: int) -> tuple[int, int]:
    """Add ordinary customers until the store holds ``total`` events; progress on stderr."""
    started = time.perf_counter()
    while have < total:
        count = min(PER_CUSTOMER, total - have)
        customer = f"other-{next_customer}"
        await store.append(TENANT, customer_stream(customer), 0, ordinary_customer(customer, max(count, 2)))
        have += max(count, 2)
        next_customer += 1
        if next_customer % 1000 == 0:
            rate = have / max(time.perf_counter() - started, 1e-9)
            print(f"  ... {have:,} events in the store ({rate:,.0f}/s while filling)", file=sys.stderr, flush=True)
    return have, next_customer


async def timed(work: Callable[[], Awaitable[object]], repeat: int) -> tuple[float, float]:
    """Median and worst wall time of ``work`` over ``repeat`` runs (after one warm-up)."""
    await work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times)


@dataclass
class Row:
    total: int
    read_ms: float
    read_worst_ms: float
    fold_ms: float


async def measure_probe(store: SqliteEventStore, total: int) -> Row:
    stream = customer_stream("probe")

    async def read() -> object:
        return await store.read_stream(TENANT, stream)

    async def read_and_fold() -> object:
        return await load(store, TENANT, stream, CustomerState("probe"), evolve)

    read_median, read_worst = await timed(read, 200)
    fold_median, _ = await timed(read_and_fold, 50)
    return Row(total, read_median * 1000, read_worst * 1000, fold_median * 1000)


async def measure_replay(store: SqliteEventStore, count: int) -> tuple[float, float, float, float]:
    """Seconds: read only (median), read + fold (median, worst), audit replay (median)."""
    print(f"writing one customer with {count:,} events ...", file=sys.stderr)
    await append_all(store, "big", big_customer("big", count))
    stream = customer_stream("big")

    async def read_fold() -> tuple[CustomerState, int]:
        return await load(store, TENANT, stream, CustomerState("big"), evolve)

    async def read_only() -> object:
        return await store.read_stream(TENANT, stream)

    async def audit_replay() -> object:
        return replay([to_envelope(r) for r in await store.read_stream(TENANT, stream)], "big")

    replay_median, replay_worst = await timed(read_fold, 5)
    big_read, _ = await timed(read_only, 5)
    audit_median, _ = await timed(audit_replay, 3)
    state, version = await read_fold()
    assert version == count and state.owner is not None
    return big_read, replay_median, replay_worst, audit_median


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=1_000_000, help="events in the big store (default 1,000,000)")
    parser.add_argument("--small", type=int, default=10_000, help="events in the small store (default 10,000)")
    parser.add_argument("--big", type=int, default=10_000, help="events of the replayed customer (default 10,000)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)

    folder = args.dir or Path(tempfile.mkdtemp(prefix="baton-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.db"
    if path.exists():
        print(f"{path} exists; pass another --dir", file=sys.stderr)
        return 2
    store = await SqliteEventStore.open(path)
    try:
        # 1. One customer with --big events: read + fold.
        big_read, replay_median, replay_worst, audit_median = await measure_replay(store, args.big)

        # 2. The probe customer in a store of --small, then --total, events.
        await append_all(store, "probe", ordinary_customer("probe", PER_CUSTOMER))
        have, next_customer = args.big + PER_CUSTOMER, 0
        rows = []
        for total in (args.small, args.total):
            print(f"filling the store to {total:,} events ...", file=sys.stderr)
            have, next_customer = await fill_to(store, total, have, next_customer)
            rows.append(await measure_probe(store, have))
        size_mb = path.stat().st_size / 1e6
    finally:
        await store.close()
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)

    load1, _, _ = os.getloadavg()
    print()
    print(f"Machine: {os.cpu_count()} CPUs, load average {load1:.1f} at the end (other work inflates the times)")
    print(f"Replay of one customer with {args.big:,} events (SQLite, median of 5):")
    print(f"  read only                        {big_read * 1000:8.1f} ms")
    print(f"  read + decode + fold (evolve)    {replay_median * 1000:8.1f} ms   (worst {replay_worst * 1000:.1f} ms)")
    print(f"  audit replay (timeline, periods) {audit_median * 1000:8.1f} ms")
    print()
    print(f"Reading one customer ({PER_CUSTOMER} events) as the store grows:")
    print(f"  {'events in store':>16} | {'read median':>12} | {'read worst':>11} | {'read + fold':>12}")
    for row in rows:
        print(f"  {row.total:>16,} | {row.read_ms:>9.2f} ms | {row.read_worst_ms:>8.2f} ms | {row.fold_ms:>9.2f} ms")
    ratio = rows[-1].read_ms / rows[0].read_ms
    print(
        f"  read time ratio {rows[-1].total:,} vs {rows[0].total:,} events: {ratio:.2f}x (database {size_mb:,.0f} MB)"
    )
    ok = replay_median < REPLAY_BAR_S
    print()
    print(f"replay bar (< {REPLAY_BAR_S:.0f} s for {args.big:,} events): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
