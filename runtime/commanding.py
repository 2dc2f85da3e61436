"""Run a command against one stream: read, fold, decide, append with optimistic
concurrency, retry a lost race a bounded number of times, then publish.

The decision itself is a pure function supplied by the service's domain module.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID, uuid5

from contracts.envelope import EventEnvelope, TraceContext
from contracts.errors import RuleViolation
from contracts.events import Event
from runtime.domain.customer import CustomerState, evolve
from runtime.domain.directory import DIRECTORY_STREAM, Directory, evolve_directory
from runtime.events import EventContext, customer_stream, encode_event, payload_of, to_envelope
from runtime.store.port import EventStore, RecordedEvent, WrongExpectedVersion
from runtime.telemetry import current_trace_context

S = TypeVar("S")

Fold = Callable[[S, EventEnvelope, Event], S]
Decide = Callable[[S], Sequence[tuple[UUID, Event]]]
AfterAppend = Callable[[Sequence[RecordedEvent]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CommandOutcome(Generic[S]):
    """The state after the command and the events it recorded (empty: nothing to do)."""

    state: S
    recorded: tuple[RecordedEvent, ...]


class ConcurrencyExhausted(RuleViolation):
    """Other writers kept changing the stream; the caller may retry later."""

    def __init__(self, stream: str, attempts: int) -> None:
        super().__init__(
            "conflict",
            "concurrent_modification",
            f"{stream} changed concurrently {attempts} times in a row; retry the request",
        )


async def load(store: EventStore, tenant_id: str, stream: str, initial: S, fold: Fold[S]) -> tuple[S, int]:
    """Fold a whole stream into state; returns the state and the stream version."""
    state, version = initial, 0
    for record in await store.read_stream(tenant_id, stream):
        envelope = to_envelope(record)
        state = fold(state, envelope, payload_of(envelope))
        version = record.version
    return state, version


async def execute(
    store: EventStore,
    tenant_id: str,
    stream: str,
    *,
    initial: S,
    fold: Fold[S],
    decide: Decide[S],
    context: EventContext,
    retries: int,
    after_append: AfterAppend | None = None,
) -> CommandOutcome[S]:
    """Decide and append; on a version conflict re-read and decide again (``retries`` times).

    ``RuleViolation`` from ``decide`` propagates unchanged: nothing was written.
    """
    for _attempt in range(retries + 1):
        state, version = await load(store, tenant_id, stream, initial, fold)
        decided = list(decide(state))
        if not decided:
            return CommandOutcome(state, ())
        new_events = [encode_event(event, stream, context, event_id) for event_id, event in decided]
        try:
            await store.append(tenant_id, stream, version, new_events)
        except WrongExpectedVersion:
            continue
        recorded = tuple(await store.read_stream(tenant_id, stream, after_version=version))
        recorded = tuple(r for r in recorded if r.event_id in {e.event_id for e in new_events})
        if after_append is not None:
            await after_append(recorded)
        for record in recorded:
            envelope = to_envelope(record)
            state = fold(state, envelope, payload_of(envelope))
        return CommandOutcome(state, recorded)
    raise ConcurrencyExhausted(stream, retries + 1)


SYSTEM_NAMESPACE = UUID("0b7f6c1e-3d2a-4f55-8a0e-6c1d9e2b7a44")


def derived_ids(seed: str) -> Callable[[], UUID]:
    """Event ids derived from what caused them, so re-running a reaction (a redelivery,
    a second replica) appends nothing twice: the store treats the same ids as a retry."""
    counter = itertools.count()
    return lambda: uuid5(SYSTEM_NAMESPACE, f"{seed}/{next(counter)}")


def system_context(actor: str, now: datetime, seed: str, cause: EventEnvelope | None = None) -> EventContext:
    """The context of events a service records on its own (a reaction or a timer)."""
    return EventContext(
        actor=actor,
        occurred_at=now,
        correlation_id=cause.correlation_id if cause else uuid5(SYSTEM_NAMESPACE, seed),
        causation_id=cause.event_id if cause else None,
        trace_context=_active_or(cause.trace_context if cause else TraceContext()),
    )


def _active_or(fallback: TraceContext) -> TraceContext:
    active = current_trace_context()
    return active if active.traceparent else fallback


async def load_customer(store: EventStore, tenant_id: str, customer_id: str) -> CustomerState:
    """A customer's current state, folded from their stream."""
    state, _ = await load(store, tenant_id, customer_stream(customer_id), CustomerState(customer_id), evolve)
    return state


async def load_directory(store: EventStore, tenant_id: str) -> Directory:
    """A tenant's agent directory, folded from its stream."""
    directory, _ = await load(store, tenant_id, DIRECTORY_STREAM, Directory(), evolve_directory)
    return directory


async def execute_for_customer(
    store: EventStore,
    tenant_id: str,
    customer_id: str,
    decide: Decide[CustomerState],
    *,
    context: EventContext,
    retries: int,
    after_append: AfterAppend | None = None,
) -> CommandOutcome[CustomerState]:
    """``execute`` on a customer's stream with the customer fold."""
    return await execute(
        store,
        tenant_id,
        customer_stream(customer_id),
        initial=CustomerState(customer_id),
        fold=evolve,
        decide=decide,
        context=context,
        retries=retries,
        after_append=after_append,
    )
