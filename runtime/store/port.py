"""The event-store port: what Baton needs from any store, whatever the technology.

The store is the source of truth and the outbox. Events live in streams identified by
``(tenant_id, stream)``; a stream's events have gapless versions 1, 2, 3, ... Every
event also gets a global ``position``: positions increase with commit order as seen by
readers, and ``read_all`` never lets a reader pass a position that a slower append will
fill later.

Adapters (``runtime.store.sqlite``, ``runtime.store.mongodb``) implement ``EventStore``
and ``ViewStore`` and pass the shared contract suite in ``tests/store/contract.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID


class StoreError(Exception):
    """Base of every error a store raises on purpose."""


class WrongExpectedVersion(StoreError):
    """An append expected a stream version other than the stream's actual one.

    Nothing was written. The caller re-reads the stream, decides again and retries.
    """

    def __init__(self, tenant_id: str, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {tenant_id}/{stream}: expected version {expected}, actual {actual}")
        self.tenant_id = tenant_id
        self.stream = stream
        self.expected = expected
        self.actual = actual


class DuplicateEventId(StoreError):
    """Some (not all) of the appended event ids already exist, or exist in another stream."""


class ViewConflict(StoreError):
    """A view document was saved by someone else since it was loaded (compare-and-set lost)."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``data`` and ``metadata`` are stored verbatim, byte for byte.

    ``data`` is the encoded payload; ``metadata`` the encoded rest of the envelope
    (occurred-at, actor, correlation and causation ids, trace context, customer id).
    The store never re-encodes them, so a hash over the stored bytes stays valid.
    """

    event_id: UUID
    event_type: str
    schema_version: int
    data: bytes
    metadata: bytes


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: a ``NewEvent`` plus where and when it was recorded, and its
    link in the stream's hash chain.

    ``hash`` is the SHA-256 (64 lowercase hex characters) of the event's canonical
    encoding (``runtime.audit.chain``: the stored bytes and the fields that place the
    event in its stream) chained to ``previous_hash``, the ``hash`` of the stream's
    previous event (64 zeros for version 1). The adapter computes both at append time,
    inside the same atomic step that checks the expected version. ``position`` and
    ``recorded_at`` are not covered by the hash.
    """

    tenant_id: str
    stream: str
    version: int
    position: int
    event_id: UUID
    event_type: str
    schema_version: int
    data: bytes
    metadata: bytes
    recorded_at: datetime
    hash: str
    previous_hash: str


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: the stream's versions and global positions it took, and
    the chain hashes of its events (for an idempotent retry: the ones stored first)."""

    first_version: int
    last_version: int
    positions: tuple[int, ...] = field(default_factory=tuple)
    duplicate: bool = False
    """True when every event id had been appended before: nothing new was written."""
    hashes: tuple[str, ...] = field(default_factory=tuple)
    """The ``hash`` of each appended event, in order."""


@dataclass(frozen=True, slots=True)
class ViewDoc:
    """One document of a service's view, with the version it was saved at."""

    key: str
    version: int
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    """A message a consumer gave up on after its attempts: kept for an operator."""

    consumer: str
    event_id: str
    tenant_id: str
    stream: str
    version: int
    subject: str
    attempts: int
    error: str
    parked_at: datetime


class EventStore(abc.ABC):
    """Append-only, per-stream optimistic concurrency, global order, outbox marks."""

    @abc.abstractmethod
    async def append(
        self,
        tenant_id: str,
        stream: str,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> AppendResult:
        """Append ``events`` atomically (all or none) if the stream is at ``expected_version``.

        ``expected_version`` 0 means the stream must not exist yet. Raises
        ``WrongExpectedVersion`` on a conflict. Re-appending events whose ids are all
        already in this stream, in this order, succeeds with ``duplicate=True`` and
        writes nothing (an idempotent retry; the result carries the stored hashes).
        Each event is chained (``RecordedEvent.hash``) to the one before it in the
        stream, read in the same atomic step as the version check. Raises ``DuplicateEventId`` when only some
        ids exist or they exist elsewhere. ``events`` must not be empty.
        """

    @abc.abstractmethod
    async def read_stream(
        self,
        tenant_id: str,
        stream: str,
        after_version: int = 0,
        until_version: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream with ``after_version < version <= until_version``, in order.

        The cost depends on the events returned, not on the size of the store.
        """

    @abc.abstractmethod
    async def stream_version(self, tenant_id: str, stream: str) -> int:
        """The stream's current version (0 when it has no events)."""

    @abc.abstractmethod
    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events of every stream with ``position > after_position``, in position order.

        Never returns an event at position p while an append that will commit at a
        position below p is still in flight: readers that resume from the last position
        they saw never skip an event.
        """

    @abc.abstractmethod
    async def unpublished(self, limit: int = 500) -> list[RecordedEvent]:
        """Events not yet marked published, oldest position first (the outbox)."""

    @abc.abstractmethod
    async def mark_published(self, event_ids: Sequence[UUID]) -> None:
        """Record that these events were acknowledged by the bus. Idempotent."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


class ViewStore(abc.ABC):
    """A service's own documents (its views and checkpoints), saved by compare-and-set.

    Views are keyed by ``(view, tenant_id, key)``. ``save`` succeeds only if the
    document is still at ``expected_version`` (0: must not exist), so two consumers
    applying the same event cannot both apply it.
    """

    @abc.abstractmethod
    async def load(self, view: str, tenant_id: str, key: str) -> ViewDoc | None:
        """The document, or None when it was never saved."""

    @abc.abstractmethod
    async def save(
        self,
        view: str,
        tenant_id: str,
        key: str,
        doc: dict[str, Any],
        version: int,
        expected_version: int,
    ) -> None:
        """Save ``doc`` at ``version`` if the stored version is ``expected_version``.

        Raises ``ViewConflict`` otherwise; nothing is written then.
        """

    @abc.abstractmethod
    async def find(self, view: str, tenant_id: str, field_name: str, value: Any, limit: int = 1000) -> list[ViewDoc]:
        """Documents of a view whose top-level ``field_name`` equals ``value``."""

    @abc.abstractmethod
    async def count(self, view: str, tenant_id: str | None = None) -> int:
        """How many documents a view holds (for one tenant, or all)."""

    @abc.abstractmethod
    async def drop(self, view: str) -> None:
        """Delete every document of a view (before a rebuild)."""

    @abc.abstractmethod
    async def park(self, message: ParkedMessage) -> None:
        """Keep a message a consumer gave up on. Parking the same (consumer, event) twice
        keeps one record with the latest attempt count and error."""

    @abc.abstractmethod
    async def parked(self, consumer: str | None = None, limit: int = 1000) -> list[ParkedMessage]:
        """Parked messages, oldest first, for one consumer or all."""

    @abc.abstractmethod
    async def unpark(self, consumer: str, event_id: str) -> None:
        """Forget a parked message (after an operator replayed it)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A durable timer: ``timer`` (whose it is) fires ``key`` at ``due_at``."""

    timer: str
    tenant_id: str
    key: str
    due_at: datetime
    data: dict[str, Any] = field(default_factory=dict)


class DeadlineStore(abc.ABC):
    """Durable deadlines that survive restarts, queried by due time.

    ``due`` costs what is due, not what is pending (an index on (timer, due_at)). Firing
    a deadline must be idempotent (deterministic event ids): with several replicas, two
    may fire the same deadline; the store does not arbitrate, the event store does.
    """

    @abc.abstractmethod
    async def schedule(self, deadline: Deadline) -> None:
        """Create or move the deadline ``(timer, tenant_id, key)`` (an upsert)."""

    @abc.abstractmethod
    async def cancel(self, timer: str, tenant_id: str, key: str, due_at: datetime | None = None) -> None:
        """Remove the deadline (idempotent). With ``due_at``, only if it is still due then
        (a deadline moved in the meantime stays)."""

    @abc.abstractmethod
    async def get(self, timer: str, tenant_id: str, key: str) -> Deadline | None:
        """The deadline, or None."""

    @abc.abstractmethod
    async def due(self, timer: str, now: datetime, limit: int = 100) -> list[Deadline]:
        """Deadlines of ``timer`` with ``due_at <= now``, earliest first, across tenants."""

    @abc.abstractmethod
    async def count(self, timer: str) -> int:
        """How many deadlines of ``timer`` are pending (due or not)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""
