"""The store is the outbox: publish what was appended, and whatever a crash left behind.

After an append, the writer publishes its events at once (the fast path) and marks them
published. A relay in every service process periodically publishes events that are
still unmarked after a grace period (a process died between append and publish, or
NATS was unreachable). JetStream drops re-publications inside its duplicate window
because each message carries the event id as ``Nats-Msg-Id``; consumers skip anything
older they have already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from runtime.store.port import EventStore, RecordedEvent

log = logging.getLogger(__name__)

PublishOne = Callable[[RecordedEvent], Awaitable[None]]


class OutboxRelay:
    """Publishes stored events to the bus and marks them published."""

    def __init__(
        self,
        store: EventStore,
        publish: PublishOne,
        clock: Callable[[], datetime],
        interval_seconds: float = 0.5,
        grace_seconds: float = 1.0,
        batch_size: int = 500,
    ) -> None:
        self._store = store
        self._publish = publish
        self._clock = clock
        self._interval = interval_seconds
        self._grace = timedelta(seconds=grace_seconds)
        self._batch_size = batch_size
        self.published_total = 0
        self.last_error: str | None = None

    async def publish_now(self, records: Sequence[RecordedEvent]) -> None:
        """Publish freshly appended events in order, then mark them published.

        If publishing fails the events stay unmarked and the relay publishes them later;
        the error is logged, not raised: the command that appended them has succeeded.
        """
        try:
            for record in records:
                await self._publish(record)
            await self._store.mark_published([r.event_id for r in records])
            self.published_total += len(records)
        except Exception as exc:  # the relay retries: the store is the source of truth
            self.last_error = repr(exc)
            log.warning("publish after append failed, the relay will retry: %r", exc)

    async def drain_once(self, include_recent: bool = False) -> int:
        """Publish unpublished events older than the grace period. Returns how many."""
        cutoff = self._clock() - self._grace
        done = 0
        while True:
            pending = await self._store.unpublished(self._batch_size)
            due = [r for r in pending if include_recent or r.recorded_at <= cutoff]
            if not due:
                return done
            for record in due:
                await self._publish(record)
            await self._store.mark_published([r.event_id for r in due])
            done += len(due)
            self.published_total += len(due)
            if len(pending) < self._batch_size or len(due) < len(pending):
                return done

    async def run(self, stop: asyncio.Event) -> None:
        """Drain periodically until ``stop`` is set; errors are logged and retried."""
        while not stop.is_set():
            try:
                count = await self.drain_once()
                if count:
                    log.info("relay published %d pending event(s)", count)
                self.last_error = None
            except Exception as exc:
                self.last_error = repr(exc)
                log.warning("relay failed, retrying: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
