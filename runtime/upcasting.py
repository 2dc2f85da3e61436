"""Upcasters: read events stored at an older schema version as the current version.

Stored events are never rewritten (the hash chain covers their stored bytes). When an
event's shape changes incompatibly, its class in ``contracts.events`` becomes the new
version and an *upcaster* turns a stored payload of the old version into a payload of
the next one, at read time. ``upcast`` applies the upcasters one version at a time
(1 -> 2 -> 3 ...), so each upcaster is written once, against the version it replaced.

Registering (``docs/schema-evolution.md`` walks through a whole change)::

    @UPCASTERS.register("ContactOpened", from_version=1)
    def contact_opened_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "language": "und"}

``typed_payload`` is what ``runtime.events.payload_of`` uses: upcast, then validate
against the class registered for the resulting version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from contracts.events import Event, event_class

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""A payload at version n in, a payload at version n + 1 out (pure; never mutates its input)."""

MAX_STEPS = 100


class Upcasters:
    """A registry of upcasters keyed by ``(event_type, from_version)``."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: ``fn`` upcasts ``event_type`` from ``from_version`` to ``from_version + 1``."""

        def add(fn: Upcaster) -> Upcaster:
            self.add(event_type, from_version, fn)
            return fn

        return add

    def add(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        """Register ``fn`` (one upcaster per type and version)."""
        key = (event_type, from_version)
        if from_version < 1:
            raise ValueError(f"schema versions start at 1, got {from_version}")
        if key in self._steps:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        self._steps[key] = fn

    def remove(self, event_type: str, from_version: int) -> None:
        """Forget an upcaster (tests)."""
        self._steps.pop((event_type, from_version), None)

    @contextmanager
    def registered(self, event_type: str, from_version: int, fn: Upcaster) -> Iterator[None]:
        """Register ``fn`` for the duration of a ``with`` block (tests)."""
        self.add(event_type, from_version, fn)
        try:
            yield
        finally:
            self.remove(event_type, from_version)

    def upcast(self, event_type: str, schema_version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The payload at the newest version the registered upcasters reach, and that version."""
        version = schema_version
        for _ in range(MAX_STEPS):
            step = self._steps.get((event_type, version))
            if step is None:
                return version, payload
            payload = step(dict(payload))
            version += 1
        raise RuntimeError(f"{event_type}: more than {MAX_STEPS} upcasting steps from v{schema_version}")


UPCASTERS = Upcasters()
"""The process-wide registry ``payload_of`` uses. Register upcasters below this line."""


def typed_payload(
    event_type: str, schema_version: int, payload: dict[str, Any], upcasters: Upcasters = UPCASTERS
) -> Event:
    """The typed event of a stored payload: upcast to the newest version, then validate
    (raises ``UnknownEventType`` if no class is registered for the resulting version)."""
    version, current = upcasters.upcast(event_type, schema_version, payload)
    return event_class(event_type, version).model_validate(current)
