"""Idempotency-Key: a retried POST gets the first answer and records nothing new.

The first request with a key is executed with event and entity ids derived from the key,
so even a retry after a crash between the append and remembering the answer appends
nothing twice (the store treats re-appended event ids as a duplicate). The answer is
remembered in intake's view store; the same key with another request is refused (422).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4, uuid5

from contracts.errors import RuleViolation
from runtime.store.port import ViewConflict, ViewStore

VIEW = "idempotency"
NAMESPACE = UUID("6b1d3c52-8a57-4d0e-9b8c-2f4f1f7f0c11")
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Remembered:
    """The answer given to the first request with a key."""

    status: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests 'the same': method, path and the JSON body."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdSource:
    """New ids for one decision: random, or derived from an idempotency key."""

    def __init__(self, tenant_id: str, key: str | None) -> None:
        self._seed = f"{tenant_id}/{key}" if key else None

    def uuids(self) -> Callable[[], UUID]:
        """A fresh sequence of event ids (restarts for every decision attempt)."""
        if self._seed is None:
            return uuid4
        counter = itertools.count()
        seed = self._seed
        return lambda: uuid5(NAMESPACE, f"{seed}/event/{next(counter)}")

    def entity(self, prefix: str) -> str:
        """A new entity id (contact, note, hand-off) with a readable prefix."""
        if self._seed is None:
            return f"{prefix}-{uuid4().hex[:16]}"
        return f"{prefix}-{uuid5(NAMESPACE, f'{self._seed}/{prefix}').hex[:16]}"


class IdempotencyRecords:
    """Remembered answers, per tenant and key."""

    def __init__(self, views: ViewStore) -> None:
        self._views = views

    @staticmethod
    def validate_key(key: str) -> None:
        """A key is 1-200 printable characters."""
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise RuleViolation(
                "invalid",
                "validation",
                "Idempotency-Key: 1-200 printable characters",
                errors=[{"field": "Idempotency-Key", "location": "header", "reason": "invalid key"}],
            )

    async def lookup(self, tenant_id: str, key: str, print_: str) -> Remembered | None:
        """The remembered answer, None if the key is new; 422 if it was used for another request."""
        found = await self._views.load(VIEW, tenant_id, key)
        if found is None:
            return None
        if found.doc["fingerprint"] != print_:
            raise RuleViolation(
                "invalid",
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; use a new key",
            )
        return Remembered(int(found.doc["status"]), dict(found.doc["body"]))

    async def remember(self, tenant_id: str, key: str, print_: str, answer: Remembered) -> Remembered:
        """Remember ``answer``; if a concurrent request won, return its answer instead."""
        doc = {"fingerprint": print_, "status": answer.status, "body": answer.body}
        try:
            await self._views.save(VIEW, tenant_id, key, doc, 1, 0)
            return answer
        except ViewConflict:
            earlier = await self.lookup(tenant_id, key, print_)
            return earlier or answer
