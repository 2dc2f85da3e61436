"""Idempotent, in-order projection of events into a service's own view.

A consumer keeps one view document per stream (per customer), saved by
compare-and-set together with the stream version it reflects. For a message carrying
version v of a stream whose view is at version w:

- v <= w: already applied (a redelivery or a re-publication): skip.
- v == w + 1: apply it.
- v > w + 1: an earlier event has not arrived yet (published by another process, or
  still being retried): read the missing events from the store, the source of truth,
  and apply them in order first.

Messages of one customer may thus arrive in any order, twice, or concurrently, and the
view still applies each event exactly once, in stream order. A message that keeps
failing is retried with exponential backoff and, after ``max_attempts`` deliveries,
parked in the view store where an operator can list it. It is never dropped silently.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.events import Event
from runtime.events import to_envelope
from runtime.rebuild import apply_envelopes
from runtime.store.port import EventStore, ParkedMessage, ViewConflict, ViewStore
from runtime.telemetry import log_customer, log_tenant, span

log = logging.getLogger(__name__)

MAX_CAS_RETRIES = 50
MAX_RETRY_DELAY_SECONDS = 60.0


class Projection(Protocol):
    """A pure fold of one stream's events into a view document."""

    view: str
    """The view's name (one view store collection/table key)."""

    def wants(self, envelope: EventEnvelope) -> bool:
        """Whether this projection keeps a document for the envelope's stream."""
        ...

    def apply(self, doc: dict[str, Any], envelope: EventEnvelope, event: Event) -> dict[str, Any]:
        """Return the new document after ``event`` (``doc`` is {} for a new stream)."""
        ...


Reactor = Callable[[EventEnvelope, Event], Awaitable[None]]
"""A side effect of an event (appending follow-up events, scheduling a deadline).

Runs before the view saves the event as applied, so a crash re-runs it: a reactor must
be idempotent (deterministic event ids, upserts)."""


class Outcome(enum.Enum):
    """What to tell JetStream about a message."""

    APPLIED = "applied"
    SKIPPED = "skipped"
    RETRY = "retry"
    PARKED = "parked"


@dataclass(frozen=True, slots=True)
class Handled:
    """The outcome of one delivery and, for RETRY, the delay before redelivery."""

    outcome: Outcome
    delay: float = 0.0


class ProjectionConsumer:
    """Applies bus messages to a projection exactly once and in stream order."""

    def __init__(
        self,
        name: str,
        store: EventStore,
        views: ViewStore,
        projection: Projection,
        clock: Callable[[], datetime],
        max_attempts: int = 5,
        retry_base_seconds: float = 0.5,
        reactor: Reactor | None = None,
    ) -> None:
        self.name = name
        self._reactor = reactor
        self._store = store
        self._views = views
        self._projection = projection
        self._clock = clock
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.redeliveries = 0

    def retry_delay(self, attempts: int) -> float:
        """Exponential backoff: base, 2*base, 4*base ... capped at one minute."""
        return float(min(self._retry_base * (2 ** max(attempts - 1, 0)), MAX_RETRY_DELAY_SECONDS))

    async def on_message(self, data: bytes, subject: str, attempts: int) -> Handled:
        """Handle one delivery (``attempts`` counts this one, from 1)."""
        if attempts > 1:
            self.redeliveries += 1
        try:
            envelope = EventEnvelope.model_validate_json(data)
        except ValidationError as exc:
            # A message nobody can ever decode: park it at once, retrying cannot help.
            await self._park(None, subject, attempts, f"undecodable message: {exc}")
            return self._count(Handled(Outcome.PARKED))
        tenant_token = log_tenant.set(envelope.tenant_id)
        customer_token = log_customer.set(envelope.customer_id)
        try:
            with span(
                f"consume {envelope.event_type}",
                SpanKind.CONSUMER,
                envelope.trace_context,
                **{
                    "messaging.system": "nats",
                    "messaging.consumer.group.name": self.name,
                    "baton.event_id": str(envelope.event_id),
                    "baton.stream_version": envelope.stream_version,
                    "messaging.message.delivery_attempt": attempts,
                },
            ):
                applied = await self.apply_through(envelope)
        except Exception as exc:
            if attempts >= self._max_attempts:
                log.error(
                    "%s: parking %s after %d attempts: %r",
                    self.name,
                    envelope.event_id,
                    attempts,
                    exc,
                )
                await self._park(envelope, subject, attempts, repr(exc))
                return self._count(Handled(Outcome.PARKED))
            delay = self.retry_delay(attempts)
            log.warning(
                "%s: %s failed (attempt %d), retry in %.1fs: %r",
                self.name,
                envelope.event_id,
                attempts,
                delay,
                exc,
            )
            return self._count(Handled(Outcome.RETRY, delay))
        finally:
            log_tenant.reset(tenant_token)
            log_customer.reset(customer_token)
        return self._count(Handled(Outcome.APPLIED if applied else Outcome.SKIPPED))

    async def apply_through(self, envelope: EventEnvelope) -> bool:
        """Bring the view of ``envelope``'s stream up to its version. False if it was already."""
        if not self._projection.wants(envelope):
            return False
        tenant, stream, target = envelope.tenant_id, envelope.stream, envelope.stream_version
        for _ in range(MAX_CAS_RETRIES):
            current = await self._views.load(self._projection.view, tenant, stream)
            version = current.version if current else 0
            if version >= target:
                return False
            doc = dict(current.doc) if current else {}
            if target == version + 1:
                pending = [envelope]
            else:
                records = await self._store.read_stream(tenant, stream, version, target)
                pending = [to_envelope(r) for r in records]
                if not pending or pending[-1].stream_version != target:
                    raise LookupError(f"{tenant}/{stream} v{target} is on the bus but not in the store yet")
            doc = await apply_envelopes(self._projection, doc, pending, self._reactor)
            try:
                await self._views.save(self._projection.view, tenant, stream, doc, target, version)
                return True
            except ViewConflict:
                continue  # someone else applied concurrently: look again
        raise ViewConflict(f"{tenant}/{stream}: gave up after {MAX_CAS_RETRIES} conflicting saves")

    async def _park(self, envelope: EventEnvelope | None, subject: str, attempts: int, error: str) -> None:
        await self._views.park(
            ParkedMessage(
                consumer=self.name,
                event_id=str(envelope.event_id) if envelope else f"undecodable:{subject}:{self._clock().isoformat()}",
                tenant_id=envelope.tenant_id if envelope else "",
                stream=envelope.stream if envelope else "",
                version=envelope.stream_version if envelope else 0,
                subject=subject,
                attempts=attempts,
                error=error[:4000],
                parked_at=self._clock(),
            )
        )

    def _count(self, handled: Handled) -> Handled:
        self.counts[handled.outcome] += 1
        return handled
