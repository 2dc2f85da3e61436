"""Applying events to a view document, once: used by the live consumers and by rebuilds.

``apply_event`` is the one definition of "apply an event to a view document": the
projection's pure ``apply`` plus the bookkeeping every view document carries
(``events_applied``, ``last_event_id``). ``ProjectionConsumer.apply_through`` and
``rebuild_view`` both go through ``apply_envelopes``, so a rebuilt view equals the one
the consumers keep.

``rebuild_view`` drops a view and re-applies every event of the store in position
order (within a stream: version order), grouped per stream and saved by
compare-and-set with the stream version, exactly as a consumer would. It never runs
reactors (side effects such as appending follow-up events or scheduling deadlines):
those happened when the events were first consumed.

Run a rebuild with the service that keeps the view stopped. While a consumer runs,
the compare-and-set keeps each document consistent (events are applied once, in
order), but readers see missing documents until the rebuild has passed them, and a
consumer that finds a document gone catches up from the store by itself, re-running
its reactor for that stream's old events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts.envelope import EventEnvelope
from contracts.events import Event
from runtime.events import payload_of, to_envelope
from runtime.store.port import EventStore, ViewConflict, ViewStore

if TYPE_CHECKING:
    from runtime.bus.consumer import Projection, Reactor

MAX_CAS_RETRIES = 50


def apply_event(projection: Projection, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
    """The document after one event: the projection's fold plus the bookkeeping."""
    doc = projection.apply(doc, envelope, event)
    doc["events_applied"] = int(doc.get("events_applied", 0)) + 1
    doc["last_event_id"] = str(envelope.event_id)
    return doc


async def apply_envelopes(
    projection: Projection,
    doc: dict[str, Any],
    envelopes: Sequence[EventEnvelope],
    reactor: Reactor | None = None,
) -> dict[str, Any]:
    """Apply ``envelopes`` (one stream, consecutive versions) in order, running
    ``reactor`` before each event is applied (as a consumer does; a rebuild passes none)."""
    for envelope in envelopes:
        event = payload_of(envelope)
        if reactor is not None:
            await reactor(envelope, event)
        doc = apply_event(projection, doc, envelope, event)
    return doc


class RebuildError(Exception):
    """The store cannot be replayed into the view (a stream has a gap)."""


@dataclass
class RebuildStats:
    """What a rebuild did."""

    view: str
    events_read: int = 0
    events_applied: int = 0
    documents: int = 0


Progress = Callable[[RebuildStats], Awaitable[None] | None]
"""Called after each page of events."""


async def _apply_stream(
    views: ViewStore, projection: Projection, tenant_id: str, stream: str, envelopes: list[EventEnvelope]
) -> tuple[int, bool]:
    """Apply a stream's next events by compare-and-set; (events applied, document created)."""
    for _ in range(MAX_CAS_RETRIES):
        current = await views.load(projection.view, tenant_id, stream)
        version = current.version if current else 0
        pending = [e for e in envelopes if e.stream_version > version]
        if not pending:
            return 0, False
        if pending[0].stream_version != version + 1:
            raise RebuildError(
                f"{tenant_id}/{stream}: the view is at version {version} but the store's next event is "
                f"version {pending[0].stream_version}"
            )
        doc = await apply_envelopes(projection, dict(current.doc) if current else {}, pending)
        try:
            await views.save(projection.view, tenant_id, stream, doc, pending[-1].stream_version, version)
        except ViewConflict:
            continue  # a running consumer saved meanwhile: look again
        return len(pending), current is None
    raise ViewConflict(f"{tenant_id}/{stream}: gave up after {MAX_CAS_RETRIES} conflicting saves")


async def rebuild_view(
    store: EventStore,
    views: ViewStore,
    projection: Projection,
    *,
    page: int = 1000,
    progress: Progress | None = None,
) -> RebuildStats:
    """Drop ``projection``'s view in ``views`` and rebuild it from every event in ``store``."""
    stats = RebuildStats(projection.view)
    await views.drop(projection.view)
    after = 0
    while batch := await store.read_all(after_position=after, limit=page):
        streams: dict[tuple[str, str], list[EventEnvelope]] = {}
        for record in batch:
            envelope = to_envelope(record)
            if projection.wants(envelope):
                streams.setdefault((record.tenant_id, record.stream), []).append(envelope)
        for (tenant_id, stream), envelopes in streams.items():
            applied, created = await _apply_stream(views, projection, tenant_id, stream, envelopes)
            stats.events_applied += applied
            stats.documents += int(created)
        stats.events_read += len(batch)
        after = batch[-1].position
        if progress is not None:
            result = progress(stats)
            if result is not None:
                await result
    return stats
