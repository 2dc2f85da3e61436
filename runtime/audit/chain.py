"""The hash chain of a stream: the one definition of an event's canonical encoding.

Every stored event carries ``hash`` and ``previous_hash``. ``hash`` is the SHA-256, in
lowercase hex, of the canonical encoding below; ``previous_hash`` is the ``hash`` of
the event before it in the same stream (``GENESIS_HASH``, 64 zeros, for version 1).
Both store adapters compute it at append time with ``event_hash`` and the verifier
recomputes it with the same function, so the encoding exists once.

Canonical encoding (``docs/audit.md`` describes it for third parties, with a worked
example that a test checks against this module): the concatenation of ten *frames*,
each the field's length in bytes as an unsigned 64-bit big-endian integer followed by
the field's bytes:

1. the format tag ``baton-event-chain-v1`` (ASCII);
2. ``previous_hash`` as 64 lowercase hex characters (ASCII);
3. ``tenant_id`` (UTF-8);
4. ``stream`` (UTF-8);
5. ``version`` in decimal, no sign, no leading zeros (ASCII);
6. ``event_id`` as the canonical lowercase hyphenated UUID text (ASCII);
7. ``event_type`` (UTF-8);
8. ``schema_version`` in decimal (ASCII);
9. ``data``: the stored payload bytes, exactly as stored;
10. ``metadata``: the stored metadata bytes, exactly as stored.

The chain covers the *stored bytes* of ``data`` and ``metadata``, never a
re-serialisation of a decoded payload: a reader that decodes and re-encodes JSON may
produce other bytes, and a future erasure (payloads encrypted under a per-customer key,
erased by destroying the key) leaves the ciphertext bytes in place, so the chain keeps
verifying after erasure. ``position`` and ``recorded_at`` are not covered: both are
assigned by the store (global commit order and the store's clock, kept at different
precisions by different adapters), so a stream copied or migrated to another store
keeps its hashes; the business time (occurred-at) and the actor are inside
``metadata``, which is covered.

Standard library only: a third party's verifier needs nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

FORMAT_TAG = b"baton-event-chain-v1"
"""The first frame of every encoding: names the format, so it can evolve."""

GENESIS_HASH = "0" * 64
"""The ``previous_hash`` of a stream's first event (version 1)."""

HASH_HEX_LENGTH = 64


class ChainedFields(Protocol):
    """What the chain covers: the fields of a ``NewEvent`` plus where it is stored."""

    @property
    def event_id(self) -> UUID: ...

    @property
    def event_type(self) -> str: ...

    @property
    def schema_version(self) -> int: ...

    @property
    def data(self) -> bytes: ...

    @property
    def metadata(self) -> bytes: ...


def _frame(value: bytes) -> bytes:
    return len(value).to_bytes(8, "big") + value


def _decimal(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"versions are not negative, got {value}")
    return str(int(value)).encode("ascii")


def canonical_encoding(
    *,
    previous_hash: str,
    tenant_id: str,
    stream: str,
    version: int,
    event_id: UUID,
    event_type: str,
    schema_version: int,
    data: bytes,
    metadata: bytes,
) -> bytes:
    """The bytes that are hashed (see the module docstring for the layout)."""
    if len(previous_hash) != HASH_HEX_LENGTH or previous_hash != previous_hash.lower():
        raise ValueError(f"previous_hash must be 64 lowercase hex characters, got {previous_hash!r}")
    bytes.fromhex(previous_hash)  # raises ValueError unless hex
    return b"".join(
        _frame(part)
        for part in (
            FORMAT_TAG,
            previous_hash.encode("ascii"),
            tenant_id.encode("utf-8"),
            stream.encode("utf-8"),
            _decimal(version),
            str(event_id).encode("ascii"),
            event_type.encode("utf-8"),
            _decimal(schema_version),
            bytes(data),
            bytes(metadata),
        )
    )


def event_hash(
    *,
    previous_hash: str,
    tenant_id: str,
    stream: str,
    version: int,
    event_id: UUID,
    event_type: str,
    schema_version: int,
    data: bytes,
    metadata: bytes,
) -> str:
    """SHA-256 of the canonical encoding, 64 lowercase hex characters."""
    return hashlib.sha256(
        canonical_encoding(
            previous_hash=previous_hash,
            tenant_id=tenant_id,
            stream=stream,
            version=version,
            event_id=event_id,
            event_type=event_type,
            schema_version=schema_version,
            data=data,
            metadata=metadata,
        )
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    """One event's place in the chain: its hash and the hash it points back to."""

    version: int
    previous_hash: str
    hash: str


def chain_links(
    tenant_id: str,
    stream: str,
    first_version: int,
    previous_hash: str,
    events: Sequence[ChainedFields],
) -> list[Link]:
    """The links of ``events`` appended at ``first_version``, ``first_version + 1``, ...
    after an event whose hash is ``previous_hash`` (``GENESIS_HASH`` when
    ``first_version`` is 1). What an adapter stores with a new commit."""
    links: list[Link] = []
    previous = previous_hash
    for offset, event in enumerate(events):
        version = first_version + offset
        digest = event_hash(
            previous_hash=previous,
            tenant_id=tenant_id,
            stream=stream,
            version=version,
            event_id=event.event_id,
            event_type=event.event_type,
            schema_version=event.schema_version,
            data=event.data,
            metadata=event.metadata,
        )
        links.append(Link(version, previous, digest))
        previous = digest
    return links
