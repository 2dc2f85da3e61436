"""The shared composition helper: builds a service's runtime (stores, bus, relay,
consumers) from settings. Entry points call it; tests pass their own parts instead.
This and the entry points are the only places that name concrete adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faststream.nats import NatsBroker

from runtime.bus.consumer import Projection, ProjectionConsumer
from runtime.bus.nats import JetStreamPublisher, attach, declare, make_broker
from runtime.bus.outbox import OutboxRelay
from runtime.config import Settings
from runtime.store.port import EventStore, ViewStore

log = logging.getLogger(__name__)

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
        return SqliteViewStore(
            path.with_name(f"{path.stem}-{service}-views{path.suffix or '.db'}"), clock=clock
        )
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from runtime.store.mongodb import MongoViewStore

        return MongoViewStore.from_uri(url, f"{settings.mongodb_database}_{service}", clock=clock)
    raise ValueError(f"BATON_STORE_URL: unsupported store {url!r} (sqlite:/// or mongodb://)")


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
    _subscribers: list[Any] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _relay_task: asyncio.Task[None] | None = None
    started: bool = False

    async def start(self) -> None:
        """Connect, declare the stream, attach consumers and start the relay."""
        await self.broker.connect()
        await declare(self.broker, self.settings)
        await self.broker.start()
        self._stop.clear()
        self._relay_task = asyncio.create_task(
            self.relay.run(self._stop), name=f"{self.name}-relay"
        )
        self.started = True
        log.info("%s runtime started", self.name)

    async def stop(self) -> None:
        """Stop taking messages, finish in-flight ones, stop the relay, close the stores."""
        self._stop.set()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        if self._relay_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._relay_task, timeout=5)
        await self.store.close()
        await self.views.close()
        self.started = False

    async def readiness(self) -> dict[str, bool]:
        """Each dependency and whether it is usable now."""
        checks: dict[str, bool] = {}
        try:
            await self.store.ping()
            checks["store"] = True
        except Exception:
            checks["store"] = False
        try:
            await self.views.ping()
            checks["views"] = True
        except Exception:
            checks["views"] = False
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
        consumer = ProjectionConsumer(
            name=f"{name}-{projection.view}",
            store=store,
            views=views,
            projection=projection,
            clock=clock,
            max_attempts=settings.consumer_max_attempts,
            retry_base_seconds=settings.consumer_retry_base_seconds,
        )
        runtime.consumers.append(consumer)
        runtime._subscribers.append(attach(broker, consumer, settings))
    return runtime
