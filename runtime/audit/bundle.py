"""Export bundles: one stream's stored events as JSON lines, verifiable without a database.

A bundle is UTF-8 text, one JSON object per line:

- one line per event, in version order, with every stored field: ``tenant_id``,
  ``stream``, ``version``, ``position``, ``event_id``, ``event_type``,
  ``schema_version``, ``recorded_at``, ``hash``, ``previous_hash``, and ``data_b64`` /
  ``metadata_b64``, the stored bytes in standard base64;
- a last line ``{"head": {...}}`` naming the stream, the number of events, and the
  version and hash of the last one (the head).

``verify_bundle`` recomputes the chain from the lines and checks that it ends at the
head line. Keep the head hash apart from the bundle (in a ticket, a signed mail) and
pass it as ``expected_head``: then even someone who rewrites the whole bundle and its
head line consistently is caught.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from runtime.audit.chain import GENESIS_HASH
from runtime.audit.verify import ChainBreak, ChainReport, verify_stream
from runtime.store.port import RecordedEvent

FORMAT = "baton-export-v1"


def event_line(record: RecordedEvent) -> str:
    """One event as a bundle line."""
    return json.dumps(
        {
            "tenant_id": record.tenant_id,
            "stream": record.stream,
            "version": record.version,
            "position": record.position,
            "event_id": str(record.event_id),
            "event_type": record.event_type,
            "schema_version": record.schema_version,
            "recorded_at": record.recorded_at.isoformat(),
            "hash": record.hash,
            "previous_hash": record.previous_hash,
            "data_b64": base64.b64encode(record.data).decode("ascii"),
            "metadata_b64": base64.b64encode(record.metadata).decode("ascii"),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def export_lines(records: Sequence[RecordedEvent], tenant_id: str, stream: str, exported_at: datetime) -> Iterator[str]:
    """The lines of a bundle of one stream (without newlines)."""
    for record in records:
        yield event_line(record)
    head = records[-1] if records else None
    yield json.dumps(
        {
            "head": {
                "format": FORMAT,
                "tenant_id": tenant_id,
                "stream": stream,
                "events": len(records),
                "version": head.version if head else 0,
                "hash": head.hash if head else GENESIS_HASH,
                "exported_at": exported_at.isoformat(),
            }
        },
        separators=(",", ":"),
    )


@dataclass(frozen=True, slots=True)
class BundleEvent:
    """An event read back from a bundle (has the fields the verifier needs)."""

    tenant_id: str
    stream: str
    version: int
    position: int
    event_id: UUID
    event_type: str
    schema_version: int
    recorded_at: str
    hash: str
    previous_hash: str
    data: bytes
    metadata: bytes


class BundleError(ValueError):
    """A bundle line cannot be read (it was cut, edited by hand, or is not a bundle)."""


def _event(number: int, line: dict[str, Any]) -> BundleEvent:
    try:
        return BundleEvent(
            tenant_id=str(line["tenant_id"]),
            stream=str(line["stream"]),
            version=int(line["version"]),
            position=int(line["position"]),
            event_id=UUID(str(line["event_id"])),
            event_type=str(line["event_type"]),
            schema_version=int(line["schema_version"]),
            recorded_at=str(line["recorded_at"]),
            hash=str(line["hash"]),
            previous_hash=str(line["previous_hash"]),
            data=base64.b64decode(str(line["data_b64"]), validate=True),
            metadata=base64.b64decode(str(line["metadata_b64"]), validate=True),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BundleError(f"line {number}: not a readable event ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle."""

    events: tuple[BundleEvent, ...]
    head: dict[str, Any] | None


def read_bundle(lines: Iterable[str]) -> Bundle:
    """Parse a bundle's lines (blank lines are ignored); raises ``BundleError``."""
    events: list[BundleEvent] = []
    head: dict[str, Any] | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if head is not None:
            raise BundleError(f"line {number}: content after the head line")
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BundleError(f"line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(line, dict):
            raise BundleError(f"line {number}: not a JSON object")
        if "head" in line:
            if not isinstance(line["head"], dict):
                raise BundleError(f"line {number}: the head is not an object")
            head = line["head"]
        else:
            events.append(_event(number, line))
    return Bundle(tuple(events), head)


def verify_bundle(lines: Iterable[str], expected_head: str | None = None) -> ChainReport:
    """Verify a bundle: its chain, and that it ends where its head line says.

    Raises ``BundleError`` when a line cannot be read at all.
    """
    bundle = read_bundle(lines)
    head = bundle.head or {}
    tenant_id = str(head.get("tenant_id", ""))
    stream = str(head.get("stream", ""))
    report = verify_stream(bundle.events, tenant_id, stream, expected_head)
    if not report.ok:
        return report
    last = bundle.events[-1] if bundle.events else None
    problem: str | None = None
    if bundle.head is None:
        problem = "the bundle has no head line: it was cut short"
    elif head.get("format") != FORMAT:
        problem = f"the head line names format {head.get('format')!r}, not {FORMAT!r}"
    elif (tenant_id, stream) != (report.tenant_id, report.stream) and last is not None:
        problem = (
            f"the head line names stream {tenant_id}/{stream}, the events are of {report.tenant_id}/{report.stream}"
        )
    elif head.get("hash") != report.head_hash or head.get("version") != report.head_version:
        problem = (
            f"the head line names version {head.get('version')} with hash {head.get('hash')}, but the events end at "
            f"version {report.head_version} with hash {report.head_hash}: events were removed or added"
        )
    elif head.get("events") != report.events:
        problem = f"the head line counts {head.get('events')} events, the bundle holds {report.events}"
    if problem is None:
        return report
    broken = ChainBreak(
        "removed",
        last.version if last else 0,
        str(last.event_id) if last else "",
        last.event_type if last else "",
        problem,
    )
    return ChainReport(report.tenant_id, report.stream, report.events, report.head_version, report.head_hash, broken)
