"""Outbound notifications to a tenant's CRM: signed webhooks with durable retries.

Application layer: no web framework here. ``services/followup/webhook_routes.py`` is the
HTTP face; the composition root constructs a ``Notifier``, runs ``Notifier.run`` as a
background task and calls ``Notifier.notify`` from its reactors.

How a notification travels:

1. ``notify`` writes a delivery record (view ``webhook-deliveries``, key: the
   notification id) and a durable deadline (timer ``followup-webhooks``) due now, and
   returns: no HTTP on the caller's path, so a slow CRM never slows event processing.
   Calling it again with the same id changes nothing (idempotent).
2. ``run`` (or ``deliver_due``) picks due deadlines, claims each record by
   compare-and-set (status ``in_flight`` with a lease), POSTs the signed body with a
   per-attempt timeout and records the attempt. 2xx: ``delivered``. Anything else (a
   non-2xx status, a timeout, a connection error): another attempt after an exponential
   backoff, until ``webhook_max_attempts``; then ``failed``. A tenant without an
   endpoint: ``no_endpoint``. Deliveries run as independent tasks: a slow endpoint holds
   only its own slot, for at most its timeout, and each tenant may hold only a few slots.

The delivery record is the truth; the deadline is only a wake-up. Every wake-up
reconciles the two (a terminal record cancels its deadline, a record not due yet moves
it), so a crash between two writes, or two replicas racing, at worst causes a spare
wake-up.

Delivery guarantee: at least once. Replicas claim a record by compare-and-set before
POSTing, so two replicas do not POST the same attempt; but a process that dies (or
stalls past its lease) after its POST reached the receiver and before the outcome was
recorded leaves a lease that expires and is retaken: the receiver then sees the same
notification again. Receivers deduplicate by the ``Baton-Event-Id`` header.

Signature: ``Baton-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`` with
``timestamp`` the ``Baton-Timestamp`` header (unix seconds); ``verify_signature`` checks
one for receivers and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from runtime.config import Settings
from runtime.store.port import Deadline, DeadlineStore, ViewConflict, ViewDoc, ViewStore

log = logging.getLogger(__name__)

DELIVERIES_VIEW = "webhook-deliveries"
"""View of delivery records, keyed by notification id."""
ENDPOINTS_VIEW = "webhooks"
"""View of the tenants' webhook endpoints; one document per tenant, key ``ENDPOINT_KEY``."""
ENDPOINT_KEY = "endpoint"
TIMER = "followup-webhooks"
"""Deadline timer of deliveries; the deadline key is the notification id."""

PENDING = "pending"
IN_FLIGHT = "in_flight"
DELIVERED = "delivered"
FAILED = "failed"
NO_ENDPOINT = "no_endpoint"
STATUSES = (PENDING, IN_FLIGHT, DELIVERED, FAILED, NO_ENDPOINT)
TERMINAL = frozenset({DELIVERED, FAILED, NO_ENDPOINT})

MAX_BACKOFF_SECONDS = 300.0
"""Retry delays double per attempt up to this cap."""
LEASE_MARGIN_SECONDS = 10.0
"""A claim's lease lasts the attempt timeout plus this; a lease older than that is stale
(its holder died or stalled) and another replica may retake the delivery."""
SIGNATURE_TOLERANCE_SECONDS = 300
"""Receivers reject signatures whose timestamp is further than this from their clock."""
RESPONSE_EXCERPT_BYTES = 200
"""How much of a failing endpoint's response body an attempt keeps (for the operator)."""
LISTING_SCAN_LIMIT = 5000
"""``deliveries`` reads at most this many records of a tenant before sorting them."""
SLOW_AFTER_SECONDS = 0.5
"""A tenant with a delivery running this long (or a quarter of the timeout, if less) is
slow: its further due deliveries beyond its bound are put back (see ``Notifier``)."""
RECORD_RETRIES = 20
"""Compare-and-set tries to record one attempt before giving up (the lease then expires)."""
USER_AGENT = "Baton-Webhooks/1"
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,256}")
"""Notification ids and kinds travel as header values: visible ASCII, no spaces."""

HEADER_EVENT_ID = "Baton-Event-Id"
HEADER_EVENT_TYPE = "Baton-Event-Type"
HEADER_TIMESTAMP = "Baton-Timestamp"
HEADER_SIGNATURE = "Baton-Signature"
HEADER_ATTEMPT = "Baton-Attempt"


# --- signing (pure) ---------------------------------------------------------------------


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Baton-Signature`` header value for ``body`` sent at ``timestamp`` (unix
    seconds): ``v1=`` and the hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    return f"v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: int,
    tolerance_seconds: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Whether a received webhook is authentic and fresh.

    ``body`` must be the raw bytes received (not re-serialised JSON); ``now`` is the
    receiver's clock in unix seconds. False when a header is missing or malformed, when
    the timestamp is more than ``tolerance_seconds`` away from ``now`` (a replayed old
    request), or when no ``v1=`` signature in the header matches (compared in constant
    time). Several signatures may be given, separated by commas or spaces.
    """
    if not timestamp_header or not signature_header:
        return False
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = _mac(secret, timestamp, body)
    candidates = [part.strip() for part in signature_header.replace(",", " ").split()]
    found = False
    for candidate in candidates:
        scheme, _, value = candidate.partition("=")
        if scheme == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected.encode("ascii")):
            found = True  # no early exit: the time taken does not depend on which one matched
    return found


def secret_fingerprint(secret: str) -> str:
    """A short, non-reversible tag of a secret (first 8 hex of its SHA-256), safe to show."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


def notification_body(
    tenant_id: str, notification_id: str, kind: str, created_at: str, payload: dict[str, Any]
) -> bytes:
    """The exact bytes POSTed (and signed) for a notification: compact UTF-8 JSON."""
    envelope = {"id": notification_id, "type": kind, "tenant_id": tenant_id, "created_at": created_at, "data": payload}
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def backoff_seconds(attempts: int, base_seconds: float) -> float:
    """The delay before the next attempt after ``attempts`` failed ones:
    ``base * 2**(attempts - 1)``, capped at ``MAX_BACKOFF_SECONDS``."""
    if attempts < 1:
        return 0.0
    return float(min(base_seconds * 2 ** min(attempts - 1, 62), MAX_BACKOFF_SECONDS))


# --- the notifier -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A tenant's registered webhook endpoint."""

    url: str
    secret: str = field(repr=False)
    updated_at: str = ""

    @property
    def fingerprint(self) -> str:
        """``secret_fingerprint`` of the secret."""
        return secret_fingerprint(self.secret)


@dataclass(frozen=True, slots=True)
class _Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _iso(moment: datetime) -> str:
    """UTC, fixed width: text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _default_client() -> httpx.AsyncClient:
    # Redirects are not followed: a 3xx is a failed attempt (the CRM must register the
    # final URL). Proxies from the environment are honoured (trust_env).
    return httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": USER_AGENT})


class Notifier:
    """Signed webhook notifications with durable, bounded retries (see the module doc).

    ``concurrency`` bounds the POSTs in flight in this process; ``per_tenant`` bounds
    those of one tenant, so one slow or hanging CRM can hold only that many slots and
    never starves the others: while it is slow, its further due deliveries are put back
    until its oldest attempt times out, so other tenants' ones reach the due window
    (``batch`` deadlines, earliest first, per round).
    ``client_factory`` builds the HTTP client once, on first use (tests may inject one).
    """

    def __init__(
        self,
        views: ViewStore,
        deadlines: DeadlineStore,
        clock: Callable[[], datetime],
        settings: Settings,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
        *,
        concurrency: int = 16,
        per_tenant: int = 4,
        batch: int = 100,
        interval_seconds: float | None = None,
    ) -> None:
        if concurrency < 1 or per_tenant < 1 or batch < 1:
            raise ValueError("concurrency, per_tenant and batch must be at least 1")
        self._views = views
        self._deadlines = deadlines
        self._clock = clock
        self._client_factory = client_factory or _default_client
        self._client: httpx.AsyncClient | None = None
        self.max_attempts = max(1, settings.webhook_max_attempts)
        self.retry_base_seconds = max(0.0, settings.webhook_retry_base_seconds)
        self.timeout_seconds = settings.webhook_timeout_seconds
        self.concurrency = concurrency
        self.per_tenant = per_tenant
        self.batch = batch
        self.interval_seconds = interval_seconds if interval_seconds is not None else settings.timer_interval_seconds
        self.lease_seconds = self.timeout_seconds + LEASE_MARGIN_SECONDS
        self.slow_seconds = min(SLOW_AFTER_SECONDS, self.timeout_seconds / 4)
        self._instance = uuid.uuid4().hex[:12]
        self._tasks: dict[tuple[str, str], asyncio.Task[bool]] = {}
        self._started: dict[tuple[str, str], float] = {}
        self._wake = asyncio.Event()
        # Counters for metrics (this process only).
        self.delivered_total = 0
        self.failed_total = 0
        self.attempts_total = 0
        self.no_endpoint_total = 0

    # --- endpoints ------------------------------------------------------------------

    async def set_endpoint(self, tenant_id: str, url: str, secret: str) -> Endpoint:
        """Register (or replace) the tenant's endpoint; the next attempts use it."""
        while True:
            found = await self._views.load(ENDPOINTS_VIEW, tenant_id, ENDPOINT_KEY)
            doc = {"url": url, "secret": secret, "updated_at": _iso(self._clock())}
            version = found.version if found else 0
            try:
                await self._views.save(ENDPOINTS_VIEW, tenant_id, ENDPOINT_KEY, doc, version + 1, version)
            except ViewConflict:
                continue  # someone else registered at the same moment: last write wins
            return Endpoint(url=url, secret=secret, updated_at=doc["updated_at"])

    async def endpoint(self, tenant_id: str) -> Endpoint | None:
        """The tenant's endpoint, or None."""
        found = await self._views.load(ENDPOINTS_VIEW, tenant_id, ENDPOINT_KEY)
        if found is None or not found.doc.get("url"):
            return None
        return Endpoint(url=found.doc["url"], secret=found.doc["secret"], updated_at=found.doc.get("updated_at", ""))

    # --- notifying --------------------------------------------------------------------

    async def notify(self, tenant_id: str, notification_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Queue a notification for delivery and return at once (no HTTP here).

        Idempotent by ``(tenant_id, notification_id)``: a second call with the same id
        changes nothing, so derive the id from the event that caused it. ``payload`` must
        be JSON-serialisable; it is sent as the body's ``data``.
        """
        for name, value in (("notification_id", notification_id), ("kind", kind)):
            if not _HEADER_SAFE.fullmatch(value):
                raise ValueError(f"{name} must be 1-256 visible ASCII characters (it is sent as a header): {value!r}")
        now = self._clock()
        doc = {
            "notification_id": notification_id,
            "tenant_id": tenant_id,
            "kind": kind,
            "payload": payload,
            "status": PENDING,
            "attempts": [],
            "next_attempt_at": _iso(now),
            "created_at": _iso(now),
        }
        try:
            await self._views.save(DELIVERIES_VIEW, tenant_id, notification_id, doc, 1, 0)
        except ViewConflict:
            await self._repair_wakeup(tenant_id, notification_id)
            return
        await self._deadlines.schedule(Deadline(TIMER, tenant_id, notification_id, now))
        self._wake.set()

    async def _repair_wakeup(self, tenant_id: str, notification_id: str) -> None:
        """A repeated ``notify``: make sure an unfinished delivery still has a deadline
        (the first call may have died between its two writes)."""
        found = await self._views.load(DELIVERIES_VIEW, tenant_id, notification_id)
        if found is None or found.doc.get("status") in TERMINAL:
            return
        if await self._deadlines.get(TIMER, tenant_id, notification_id) is None:
            due = _parse(found.doc.get("next_attempt_at")) or self._clock()
            await self._deadlines.schedule(Deadline(TIMER, tenant_id, notification_id, due))
            self._wake.set()

    # --- delivering -------------------------------------------------------------------

    async def deliver_due(self, limit: int = 100) -> int:
        """Deliver the due notifications (at most ``limit``, each at most once in this
        call, at most ``concurrency`` at a time) and wait for them. Returns how many were
        acted on (an attempt made or a final status set)."""
        seen: set[tuple[str, str]] = set()
        mine: list[asyncio.Task[bool]] = []
        while True:
            started = await self._start_due(exclude=seen, budget=limit - len(seen))
            mine += started
            running = [t for t in mine if not t.done()]
            if not running:
                if not started:
                    break
                continue
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        return sum(1 for t in mine if not t.cancelled() and t.exception() is None and t.result())

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver due notifications until ``stop`` is set. Never raises.

        Deliveries run as tasks: the loop starts new ones while slow ones are still
        waiting for their endpoint. On stop, in-flight deliveries get a short grace period;
        any still running are cancelled and their leases let a replica retake them.
        """
        log.info("webhook notifier %s started", self._instance)
        errors = 0
        try:
            while not stop.is_set():
                pause = self.interval_seconds
                self._wake.clear()  # before looking: a notify from now on wakes the next round
                try:
                    await self._start_due(exclude=set(), budget=self.batch, put_back=True)
                    errors = 0
                except Exception:
                    errors += 1
                    if errors == 1 or errors % 100 == 0:
                        log.exception(
                            "webhook notifier: could not start due deliveries (%d in a row); retrying", errors
                        )
                    pause = min(self.interval_seconds * 2 ** min(errors, 10), 5.0)  # the store may be down
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
        finally:
            await self._drain(grace_seconds=min(self.timeout_seconds + 0.5, 3.0))
            await self.aclose()
            log.info("webhook notifier %s stopped", self._instance)

    async def aclose(self) -> None:
        """Close the HTTP client (a later delivery opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    @property
    def in_flight(self) -> int:
        """Deliveries running in this process now."""
        return len(self._tasks)

    async def _drain(self, grace_seconds: float) -> None:
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, still = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still)

    async def _start_due(
        self, exclude: set[tuple[str, str]], budget: int, put_back: bool = False
    ) -> list[asyncio.Task[bool]]:
        """Start a task per due deadline, within the global and per-tenant bounds.

        Due deadlines of a tenant at its bound are left for a later round. With
        ``put_back`` (the background loop), those of a *slow* tenant (one of its
        deliveries has been running for ``slow_seconds``) are moved to when its oldest
        delivery times out: otherwise they would fill the due window (earliest first,
        ``batch`` long) and keep other tenants' deliveries out of it.
        """
        free = min(self.concurrency - len(self._tasks), budget)
        if free <= 0:
            return []
        now = self._clock()
        due = await self._deadlines.due(TIMER, now, limit=self.batch)
        per_tenant = Counter(tenant for tenant, _ in self._tasks)
        started: list[asyncio.Task[bool]] = []
        later: list[tuple[Deadline, float]] = []
        for deadline in due:
            key = (deadline.tenant_id, deadline.key)
            if key in self._tasks or key in exclude:
                continue
            if per_tenant[deadline.tenant_id] >= self.per_tenant:
                wait = self._slow_for(deadline.tenant_id)
                if put_back and wait is not None:
                    later.append((deadline, wait))
                continue
            if len(started) >= free:
                continue  # no slot: left due; a later one may still be a tenant to put back
            per_tenant[deadline.tenant_id] += 1
            exclude.add(key)
            self._started[key] = time.monotonic()
            task = asyncio.create_task(self._deliver_guarded(deadline), name=f"webhook {key[0]}/{key[1]}")
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
            started.append(task)
        for deadline, wait in later:
            # Not an attempt: only the wake-up moves (the record stays due).
            when = now + timedelta(seconds=max(wait, self.interval_seconds))
            await self._deadlines.schedule(Deadline(TIMER, deadline.tenant_id, deadline.key, when, deadline.data))
        return started

    def _slow_for(self, tenant_id: str) -> float | None:
        """When the tenant is slow (a delivery of it running for ``slow_seconds`` or more):
        the seconds until its oldest delivery times out; else None."""
        starts = [at for (tenant, _), at in self._started.items() if tenant == tenant_id]
        if not starts:
            return None
        running_for = time.monotonic() - min(starts)
        if running_for < self.slow_seconds:
            return None
        return max(0.0, self.timeout_seconds - running_for)

    def _finished(self, key: tuple[str, str], _task: asyncio.Task[bool]) -> None:
        self._tasks.pop(key, None)
        self._started.pop(key, None)
        self._wake.set()  # a slot is free

    async def _deliver_guarded(self, deadline: Deadline) -> bool:
        try:
            return await self._deliver(deadline)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery %s/%s failed unexpectedly; retried later", deadline.tenant_id, deadline.key)
            return False

    async def _deliver(self, deadline: Deadline) -> bool:
        """One wake-up of one delivery: reconcile, claim, POST, record. True when acted on."""
        tenant_id, notification_id = deadline.tenant_id, deadline.key
        found = await self._views.load(DELIVERIES_VIEW, tenant_id, notification_id)
        now = self._clock()
        if found is None or found.doc.get("status") in TERMINAL:
            await self._deadlines.cancel(TIMER, tenant_id, notification_id, due_at=deadline.due_at)
            return False
        doc = found.doc
        if doc.get("status") == IN_FLIGHT:
            lease_until = _parse(doc.get("lease_until"))
            if lease_until is not None and lease_until > now:  # another replica is on it
                await self._deadlines.schedule(Deadline(TIMER, tenant_id, notification_id, lease_until))
                return False
        else:
            next_at = _parse(doc.get("next_attempt_at"))
            if next_at is not None and next_at > now:  # woken early: not due yet
                await self._deadlines.schedule(Deadline(TIMER, tenant_id, notification_id, next_at))
                return False
        attempts = list(doc.get("attempts", []))
        if doc.get("status") == IN_FLIGHT:  # a stale lease: its holder died or stalled
            claimed_at = _parse(doc.get("lease_claimed_at")) or now
            abandoned = "abandoned: the lease expired before an outcome was recorded (the receiver may have it)"
            attempts.append(_attempt_entry(claimed_at, None, abandoned, 0, doc.get("lease_url")))
            if len(attempts) >= self.max_attempts:
                return await self._finish(found, {**doc, "attempts": attempts}, FAILED, now)

        endpoint = await self.endpoint(tenant_id)
        if endpoint is None:
            attempts.append(_attempt_entry(now, None, "no webhook endpoint is registered for this tenant", 0))
            return await self._finish(found, {**doc, "attempts": attempts}, NO_ENDPOINT, now)

        lease_id = uuid.uuid4().hex
        lease_until = now + timedelta(seconds=self.lease_seconds)
        claimed = {
            **doc,
            "attempts": attempts,
            "status": IN_FLIGHT,
            "lease_id": lease_id,
            "lease_owner": self._instance,
            "lease_until": _iso(lease_until),
            "lease_claimed_at": _iso(now),
            "lease_url": endpoint.url,
        }
        try:
            await self._views.save(
                DELIVERIES_VIEW, tenant_id, notification_id, claimed, found.version + 1, found.version
            )
        except ViewConflict:
            return False  # another replica claimed or finished it first; its writes move the deadline
        # While we POST, nobody else should see it due: wake up at the lease's end instead
        # (if we die, that wake-up retakes the delivery).
        await self._deadlines.schedule(Deadline(TIMER, tenant_id, notification_id, lease_until))

        outcome = await self._post(endpoint, doc, attempt=len(attempts) + 1)
        self.attempts_total += 1
        await self._record(
            tenant_id,
            notification_id,
            lease_id,
            _attempt_entry(now, outcome.status_code, outcome.error, outcome.duration_ms, endpoint.url),
            outcome.ok,
        )
        return True

    async def _post(self, endpoint: Endpoint, doc: dict[str, Any], attempt: int) -> _Outcome:
        """One signed POST, bounded by the attempt timeout as a whole."""
        body = notification_body(
            doc["tenant_id"], doc["notification_id"], doc["kind"], doc["created_at"], doc.get("payload", {})
        )
        timestamp = int(self._clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            HEADER_EVENT_ID: doc["notification_id"],
            HEADER_EVENT_TYPE: doc["kind"],
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: sign(endpoint.secret, timestamp, body),
            HEADER_ATTEMPT: str(attempt),
        }
        if self._client is None:
            self._client = self._client_factory()
        client = self._client
        started = time.monotonic()

        def elapsed() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with client.stream(
                    "POST", endpoint.url, content=body, headers=headers, timeout=self.timeout_seconds
                ) as response:
                    if 200 <= response.status_code < 300:
                        return _Outcome(response.status_code, None, elapsed())
                    excerpt = await _read_some(response, RESPONSE_EXCERPT_BYTES)
                    error = f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
                    return _Outcome(response.status_code, error, elapsed())
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(None, f"timeout: no answer within {self.timeout_seconds:g} s", elapsed())
        except Exception as error:  # connection refused, TLS, invalid URL...: a failed attempt
            return _Outcome(None, f"{type(error).__name__}: {error}".strip()[:300], elapsed())

    async def _record(
        self, tenant_id: str, notification_id: str, lease_id: str, entry: dict[str, Any], ok: bool
    ) -> None:
        """Add an attempt to the record (compare-and-set, retried on conflict) and decide
        what comes next: delivered, another attempt later, or failed."""
        for _ in range(RECORD_RETRIES):
            found = await self._views.load(DELIVERIES_VIEW, tenant_id, notification_id)
            if found is None:
                return
            if await self._record_on(found, lease_id, entry, ok):
                return
        log.warning(
            "webhook delivery %s/%s: could not record an attempt after %d conflicts; its lease will expire",
            tenant_id,
            notification_id,
            RECORD_RETRIES,
        )

    async def _record_on(self, found: ViewDoc, lease_id: str, entry: dict[str, Any], ok: bool) -> bool:
        """One compare-and-set try of ``_record``; False on a conflict."""
        doc = found.doc
        attempts = [*doc.get("attempts", []), entry]
        now = self._clock()
        if doc.get("status") != IN_FLIGHT or doc.get("lease_id") != lease_id:
            # Our lease was retaken (we stalled) or the delivery was finished meanwhile:
            # keep the attempt for the history; the status is not ours to decide, except
            # that a success makes it delivered whatever happened in between.
            if ok and doc.get("status") != DELIVERED:
                return await self._finish(found, {**doc, "attempts": attempts}, DELIVERED, now)
            return await self._save(found, {**doc, "attempts": attempts})
        if ok:
            return await self._finish(found, {**doc, "attempts": attempts}, DELIVERED, now)
        if len(attempts) >= self.max_attempts:
            return await self._finish(found, {**doc, "attempts": attempts}, FAILED, now)
        next_at = now + timedelta(seconds=backoff_seconds(len(attempts), self.retry_base_seconds))
        retry = _without_lease({**doc, "attempts": attempts, "status": PENDING, "next_attempt_at": _iso(next_at)})
        if not await self._save(found, retry):
            return False
        await self._deadlines.schedule(Deadline(TIMER, doc["tenant_id"], found.key, next_at))
        return True

    async def _save(self, found: ViewDoc, doc: dict[str, Any]) -> bool:
        try:
            await self._views.save(DELIVERIES_VIEW, doc["tenant_id"], found.key, doc, found.version + 1, found.version)
        except ViewConflict:
            return False
        return True

    async def _finish(self, found: ViewDoc, doc: dict[str, Any], status: str, now: datetime) -> bool:
        """Save a final status and drop the wake-up. False when the record moved meanwhile."""
        final = _without_lease({**doc, "status": status, "next_attempt_at": None, "finished_at": _iso(now)})
        if status == DELIVERED:
            final["delivered_at"] = _iso(now)
        if not await self._save(found, final):
            return False
        if status == DELIVERED:
            self.delivered_total += 1
        elif status == FAILED:
            self.failed_total += 1
        elif status == NO_ENDPOINT:
            self.no_endpoint_total += 1
        await self._deadlines.cancel(TIMER, doc["tenant_id"], found.key)
        return True

    # --- listing ----------------------------------------------------------------------

    async def delivery(self, tenant_id: str, notification_id: str) -> dict[str, Any] | None:
        """One delivery record, or None."""
        found = await self._views.load(DELIVERIES_VIEW, tenant_id, notification_id)
        return None if found is None else dict(found.doc)

    async def deliveries(self, tenant_id: str, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The tenant's delivery records (of one status, or all), newest first.

        Reads at most ``LISTING_SCAN_LIMIT`` records of the tenant, then sorts them.
        """
        if limit <= 0:
            return []
        if status is None:
            found = await self._views.find(DELIVERIES_VIEW, tenant_id, "tenant_id", tenant_id, LISTING_SCAN_LIMIT)
        else:
            found = await self._views.find(DELIVERIES_VIEW, tenant_id, "status", status, LISTING_SCAN_LIMIT)
        docs = [dict(f.doc) for f in found]
        docs.sort(key=lambda d: (d.get("created_at") or "", d.get("notification_id") or ""), reverse=True)
        return docs[:limit]


def _attempt_entry(
    at: datetime, status_code: int | None, error: str | None, duration_ms: int, url: str | None = None
) -> dict[str, Any]:
    """One attempt as the delivery record keeps it; ``at`` is when it started."""
    entry: dict[str, Any] = {"at": _iso(at), "status_code": status_code, "error": error, "duration_ms": duration_ms}
    if url:
        entry["url"] = url
    return entry


_LEASE_FIELDS = ("lease_id", "lease_owner", "lease_until", "lease_claimed_at", "lease_url")


def _without_lease(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _LEASE_FIELDS}


async def _read_some(response: httpx.Response, limit: int) -> str:
    """At most ``limit`` bytes of a response body, decoded leniently (never the whole of a
    huge body)."""
    chunks = bytearray()
    async for chunk in response.aiter_bytes():
        chunks += chunk
        if len(chunks) >= limit:
            break
    return chunks[:limit].decode("utf-8", "replace").strip()
