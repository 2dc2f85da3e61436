"""The shared composition helper: builds a service's runtime (stores, bus, relay,
consumers) from settings. Entry points call it; tests pass their own parts instead.
This and the entry points are the only places that name concrete adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faststream.nats import NatsBroker

from runtime.bus.consumer import Projection, ProjectionConsumer, Reactor
from runtime.bus.nats import JetStreamPublisher, attach, declare, make_broker
from runtime.bus.outbox import OutboxRelay
from runtime.config import Settings
from runtime.events import to_envelope
from runtime.store.port import DeadlineStore, EventStore, RecordedEvent, ViewStore
from runtime.telemetry import Family, Metrics, counter, gauge

log = logging.getLogger(__name__)
STOP_TIMEOUT_SECONDS = 4.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


def open_event_store(settings: Settings, clock: Clock) -> EventStore:
    """The event store named by ``settings`` (SQLite file or MongoDB)."""
    url = settings.resolved_store_url()
    if url.startswith("sqlite:"):
        from runtime.store.sqlite import SqliteEventStore

        return SqliteEventStore(_sqlite_path(url), clock=clock)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from runtime.store.mongodb import MongoEventStore

        return MongoEventStore.from_uri(url, settings.mongodb_database, clock=clock)
    raise ValueError(f"BATON_STORE_URL: unsupported store {url!r} (sqlite:/// or mongodb://)")


def open_view_store(settings: Settings, service: str, clock: Clock) -> ViewStore:
    """The service's own view store, beside the event store but separate from it."""
    url = settings.resolved_store_url()
    if url.startswith("sqlite:"):
        from runtime.store.sqlite import SqliteViewStore

        path = _sqlite_path(url)
        return SqliteViewStore(path.with_name(f"{path.stem}-{service}-views{path.suffix or '.db'}"), clock=clock)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from runtime.store.mongodb import MongoViewStore

        return MongoViewStore.from_uri(url, f"{settings.mongodb_database}_{service}", clock=clock)
    raise ValueError(f"BATON_STORE_URL: unsupported store {url!r} (sqlite:/// or mongodb://)")


def open_deadline_store(settings: Settings, service: str) -> DeadlineStore:
    """The service's durable deadlines, beside its views."""
    url = settings.resolved_store_url()
    if url.startswith("sqlite:"):
        from runtime.store.sqlite import SqliteDeadlineStore

        path = _sqlite_path(url)
        return SqliteDeadlineStore(path.with_name(f"{path.stem}-{service}-views{path.suffix or '.db'}"))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from runtime.store.mongodb import MongoDeadlineStore

        return MongoDeadlineStore.from_uri(url, f"{settings.mongodb_database}_{service}")
    raise ValueError(f"BATON_STORE_URL: unsupported store {url!r} (sqlite:/// or mongodb://)")


Scraper = Callable[[], Awaitable[list[Family]]]
"""Computes metric families at scrape time (queries a store, reads counters)."""

Background = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A task a service runs until its stop event is set (timers, the relay)."""


@dataclass
class ServiceRuntime:
    """Everything a service process runs besides its HTTP routes."""

    name: str
    settings: Settings
    clock: Clock
    store: EventStore
    views: ViewStore
    broker: NatsBroker
    relay: OutboxRelay
    consumers: list[ProjectionConsumer] = field(default_factory=list)
    deadlines: DeadlineStore | None = None
    metrics: Metrics = field(init=False)
    _scrapers: list[Scraper] = field(default_factory=list)
    _subscribers: list[Any] = field(default_factory=list)
    _background: list[Background] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: bool = False

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.name)

    async def after_append(self, records: Sequence[RecordedEvent]) -> None:
        """Count freshly appended events and publish them (the outbox fast path)."""
        self.metrics.events_appended.labels(self.name).inc(len(records))
        await self.relay.publish_now(records)

    def add_scraper(self, scraper: Scraper) -> None:
        """Add metric families computed at each scrape of /metrics."""
        self._scrapers.append(scraper)

    async def scrape(self) -> bytes:
        """The Prometheus exposition of this service."""
        families: list[Family] = []
        try:
            backlog = len(await self.store.unpublished(10_000))
            families.append(
                gauge("baton_outbox_backlog", "Appended events not yet published.", {"service": self.name}, backlog)
            )
        except Exception:
            log.warning("metrics: outbox backlog unavailable", exc_info=True)
        redeliveries: dict[tuple[str, ...], float] = {}
        outcomes: dict[tuple[str, ...], float] = {}
        for consumer in self.consumers:
            redeliveries[(consumer.name,)] = consumer.redeliveries
            for outcome, count in consumer.counts.items():
                outcomes[(consumer.name, outcome.value)] = count
            try:
                parked = len(await self.views.parked(consumer.name))
                families.append(
                    gauge(
                        "baton_parked_messages",
                        "Messages parked after their attempts.",
                        {"consumer": consumer.name},
                        parked,
                    )
                )
                info = await self.broker.connection.jetstream().consumer_info(self.settings.nats_stream, consumer.name)
                families.append(
                    gauge(
                        "baton_consumer_lag",
                        "Messages not yet delivered to the consumer.",
                        {"consumer": consumer.name},
                        info.num_pending or 0,
                    )
                )
            except Exception:
                log.debug("metrics: consumer %s state unavailable", consumer.name, exc_info=True)
        if self.consumers:
            families.append(
                counter("baton_consumer_redeliveries", "Deliveries after the first.", redeliveries, ["consumer"])
            )
            families.append(
                counter("baton_consumer_messages", "Messages handled, by outcome.", outcomes, ["consumer", "outcome"])
            )
        families.append(
            counter(
                "baton_events_published",
                "Events published to JetStream by this process.",
                {(self.name,): self.relay.published_total},
                ["service"],
            )
        )
        for scraper in self._scrapers:
            try:
                families.extend(await scraper())
            except Exception:
                log.warning("metrics: a scraper failed", exc_info=True)
        return self.metrics.exposition(families)

    def add_consumer(self, projection: Projection, reactor: Reactor | None = None) -> ProjectionConsumer:
        """Keep ``projection`` up to date from the bus (and run ``reactor`` per event)."""
        consumer = ProjectionConsumer(
            name=f"{self.name}-{projection.view}",
            store=self.store,
            views=self.views,
            projection=projection,
            clock=self.clock,
            max_attempts=self.settings.consumer_max_attempts,
            retry_base_seconds=self.settings.consumer_retry_base_seconds,
            reactor=reactor,
        )
        self.consumers.append(consumer)
        self._subscribers.append(attach(self.broker, consumer, self.settings))
        return consumer

    async def replay_parked(self, consumer: str | None = None, event_id: str | None = None) -> list[dict[str, Any]]:
        """Re-apply parked messages through their consumer, reading each event from the store.

        Idempotent: a view that has moved past the event skips it. A message replayed
        successfully is unparked; one that fails again stays parked with the new error.
        """
        by_name = {c.name: c for c in self.consumers}
        results: list[dict[str, Any]] = []
        for parked in await self.views.parked(consumer):
            if event_id is not None and parked.event_id != event_id:
                continue
            result: dict[str, Any] = {"consumer": parked.consumer, "event_id": parked.event_id}
            owner = by_name.get(parked.consumer)
            records = (
                await self.store.read_stream(parked.tenant_id, parked.stream, parked.version - 1, parked.version)
                if parked.stream
                else []
            )
            if owner is None or not records or str(records[0].event_id) != parked.event_id:
                result.update(outcome="not_replayable", reason="no such consumer here or event not in the store")
                results.append(result)
                continue
            try:
                await owner.apply_through(to_envelope(records[0]))
            except Exception as exc:
                result.update(outcome="failed", reason=repr(exc))
                await self.views.park(replace(parked, error=repr(exc)[:4000], parked_at=self.clock()))
            else:
                await self.views.unpark(parked.consumer, parked.event_id)
                result.update(outcome="replayed")
            results.append(result)
        return results

    def add_background(self, task: Background) -> None:
        """Run ``task`` from start to stop."""
        self._background.append(task)

    def open_deadlines(self) -> DeadlineStore:
        """The service's deadline store (opened once)."""
        if self.deadlines is None:
            self.deadlines = open_deadline_store(self.settings, self.name)
        return self.deadlines

    async def start(self) -> None:
        """Connect, declare the stream, attach consumers, start the relay and timers."""
        await self.broker.connect()
        await declare(self.broker, self.settings)
        await self.broker.start()
        self._stop.clear()
        for task in [self.relay.run, *self._background]:
            self._tasks.append(asyncio.create_task(task(self._stop)))
        self.started = True
        log.info("%s runtime started", self.name)

    async def stop(self) -> None:
        """Stop taking messages, finish in-flight ones, stop background tasks, close stores."""
        self._stop.set()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in pending:
                task.cancel()
        self._tasks.clear()
        await self.store.close()
        await self.views.close()
        if self.deadlines is not None:
            await self.deadlines.close()
        self.started = False

    async def readiness(self) -> dict[str, bool]:
        """Each dependency and whether it is usable now."""
        checks: dict[str, bool] = {}
        pings: dict[str, Callable[[], Awaitable[None]]] = {"store": self.store.ping, "views": self.views.ping}
        if self.deadlines is not None:
            pings["deadlines"] = self.deadlines.ping
        for check, ping in pings.items():
            try:
                await ping()
                checks[check] = True
            except Exception:
                checks[check] = False
        connection = getattr(self.broker, "_connection", None)
        checks["nats"] = bool(connection is not None and connection.is_connected)
        checks["consumers"] = self.started and all(
            getattr(s, "subscription", None) is not None for s in self._subscribers
        )
        return checks


def build_runtime(
    name: str,
    settings: Settings,
    projections: Sequence[Projection] = (),
    *,
    clock: Clock = utc_now,
    store: EventStore | None = None,
    views: ViewStore | None = None,
    broker: NatsBroker | None = None,
) -> ServiceRuntime:
    """Compose a service runtime. Pass ``store``/``views``/``broker`` to replace the defaults."""
    store = store or open_event_store(settings, clock)
    views = views or open_view_store(settings, name, clock)
    broker = broker or make_broker(settings, name)
    relay = OutboxRelay(
        store,
        JetStreamPublisher(broker, settings),
        clock=clock,
        interval_seconds=settings.relay_interval_seconds,
    )
    runtime = ServiceRuntime(name, settings, clock, store, views, broker, relay)
    for projection in projections:
        runtime.add_consumer(projection)
    return runtime
