"""Webhook notifications to the CRM: signed POSTs to a real local receiver, durable
retries with backoff, bounded attempts, idempotent notify, replicas, and the HTTP API.

The receiver is a small HTTP/1.1 server on 127.0.0.1 (``asyncio.start_server``) that
verifies every signature with ``verify_signature``. Stores are real SQLite files.
Waiting is by polling (``eventually``), never by fixed sleeps; tests that are about
time use a manual clock and ``deliver_due`` instead of the background loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from runtime.config import Settings
from runtime.natsserver import free_port
from runtime.store.port import Deadline
from runtime.store.sqlite import SqliteDeadlineStore, SqliteViewStore
from runtime.web import install_problem_handlers
from services.followup.notifications import (
    DELIVERIES_VIEW,
    TIMER,
    Notifier,
    backoff_seconds,
    notification_body,
    secret_fingerprint,
    sign,
    verify_signature,
)
from services.followup.webhook_routes import add_webhook_routes
from tests.support import eventually

SECRET_A = "secret-for-tenant-a-0123456789"
SECRET_B = "secret-for-tenant-b-9876543210"
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


# --- a real receiver --------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float  # time.monotonic() when the request arrived

    @property
    def event_id(self) -> str:
        return self.headers["baton-event-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """HTTP receiver; ``modes[path]`` is a status code to answer or ``"hang"``."""

    secrets: dict[str, str]
    now: Callable[[], int] = lambda: int(time.time())
    modes: dict[str, int | str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    in_progress: dict[str, int] = field(default_factory=dict)
    max_in_progress: dict[str, int] = field(default_factory=dict)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def got(self, path: str, count: int) -> Callable[[], Awaitable[bool]]:
        """A probe for ``eventually``: at least ``count`` requests arrived on ``path``."""

        async def probe() -> bool:
            return len(self.at(path)) >= count

        return probe

    async def start(self) -> Receiver:
        self.port = free_port()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        self._release.set()  # hanging handlers answer now
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            secret = self.secrets.get(path, "")
            verified = verify_signature(
                secret, headers.get("baton-timestamp"), headers.get("baton-signature"), body, now=self.now()
            )
            self.received.append(Received(path, headers, body, verified, time.monotonic()))
            mode = self.modes.get(path, 200)
            if mode == "hang":
                self.in_progress[path] = self.in_progress.get(path, 0) + 1
                self.max_in_progress[path] = max(self.max_in_progress.get(path, 0), self.in_progress[path])
                try:
                    await self._release.wait()
                finally:
                    self.in_progress[path] -= 1
                mode = 200
            status = int(mode) if verified else 401
            text = b"ok" if status < 300 else b"receiver says no"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode() + text
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class ManualClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- fixtures ---------------------------------------------------------------------------


@dataclass
class Stores:
    views: SqliteViewStore
    deadlines: SqliteDeadlineStore
    path: Path


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    path = tmp_path / "followup-views.db"
    views = await SqliteViewStore.open(path)
    deadlines = await SqliteDeadlineStore.open(path)
    yield Stores(views, deadlines, path)
    await views.close()
    await deadlines.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver(secrets={"/a": SECRET_A, "/b": SECRET_B}).start()
    yield server
    await server.stop()


def fast_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_retry_base_seconds": 0.05,
        "webhook_max_attempts": 8,
        "webhook_timeout_seconds": 2.0,
        "timer_interval_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def delivery(notifier: Notifier, tenant: str, notification_id: str) -> dict[str, Any]:
    doc = await notifier.delivery(tenant, notification_id)
    assert doc is not None
    return doc


async def status_is(notifier: Notifier, tenant: str, notification_id: str, status: str) -> dict[str, Any] | None:
    doc = await delivery(notifier, tenant, notification_id)
    return doc if doc["status"] == status else None


class Running:
    """``notifier.run`` as a background task, stopped (and checked not to raise) on exit."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.notifier.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=5)


# --- signing ----------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"id":"n1"}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, 1700000000, body) == f"v1={expected}"


def test_verify_signature_accepts_only_authentic_fresh_requests() -> None:
    body = notification_body("acme", "n1", "escalation.raised", T0.isoformat(), {"level": 1})
    ts = 1_700_000_000
    good = sign(SECRET_A, ts, body)
    assert verify_signature(SECRET_A, str(ts), good, body, now=ts)
    assert verify_signature(SECRET_A, str(ts), good, body, now=ts + 300)
    assert verify_signature(SECRET_A, str(ts), f"v1=deadbeef, {good}", body, now=ts)  # secret rotation
    assert not verify_signature(SECRET_A, str(ts), good, body + b" ", now=ts)  # tampered body
    assert not verify_signature(SECRET_B, str(ts), good, body, now=ts)  # wrong secret
    assert not verify_signature(SECRET_A, str(ts + 1), good, body, now=ts)  # timestamp not the signed one
    assert not verify_signature(SECRET_A, str(ts), good, body, now=ts + 301)  # replayed later
    assert not verify_signature(SECRET_A, str(ts), good, body, now=ts - 301)  # from the future
    assert not verify_signature(SECRET_A, "yesterday", good, body, now=ts)
    assert not verify_signature(SECRET_A, None, good, body, now=ts)
    assert not verify_signature(SECRET_A, str(ts), None, body, now=ts)
    assert not verify_signature(SECRET_A, str(ts), good.replace("v1=", "v0="), body, now=ts)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_seconds(20, 1.0) == 300.0
    assert backoff_seconds(500, 1.0) == 300.0


# --- delivery ---------------------------------------------------------------------------


async def test_signed_verifiable_notification_is_delivered(stores: Stores, receiver: Receiver) -> None:
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings())
    await notifier.set_endpoint("acme", receiver.url("/a"), SECRET_A)
    payload = {"escalation_id": "esc-1", "level": 1, "to_agent_id": "sup-7", "customer_id": "c-1"}

    async with Running(notifier):
        await notifier.notify("acme", "escalation.raised:esc-1", "escalation.raised", payload)
        doc = await eventually(lambda: status_is(notifier, "acme", "escalation.raised:esc-1", "delivered"), 5)

    (request,) = receiver.at("/a")
    assert request.verified
    assert request.headers["content-type"] == "application/json"
    assert request.headers["baton-event-id"] == "escalation.raised:esc-1"
    assert request.headers["baton-event-type"] == "escalation.raised"
    assert request.headers["baton-signature"].startswith("v1=")
    assert abs(int(request.headers["baton-timestamp"]) - time.time()) < 10
    body = request.json()
    assert body == {
        "id": "escalation.raised:esc-1",
        "type": "escalation.raised",
        "tenant_id": "acme",
        "created_at": doc["created_at"],
        "data": payload,
    }
    (attempt,) = doc["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["error"] is None
    assert attempt["url"] == receiver.url("/a")
    assert doc["next_attempt_at"] is None
    assert "lease_id" not in doc
    assert await stores.deadlines.count(TIMER) == 0
    assert (notifier.delivered_total, notifier.attempts_total, notifier.failed_total) == (1, 1, 0)


async def test_retried_while_endpoint_answers_500_then_delivered_when_it_recovers(
    stores: Stores, receiver: Receiver
) -> None:
    base = 0.05
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings(webhook_retry_base_seconds=base))
    await notifier.set_endpoint("acme", receiver.url("/a"), SECRET_A)
    receiver.modes["/a"] = 500

    async with Running(notifier):
        await notifier.notify("acme", "n-500", "promise.reminder", {"promise_id": "p-1"})

        async def failed_three_times() -> bool:
            return len((await delivery(notifier, "acme", "n-500"))["attempts"]) >= 3

        await eventually(failed_three_times, 5)
        receiver.modes["/a"] = 204  # the CRM recovers
        doc = await eventually(lambda: status_is(notifier, "acme", "n-500", "delivered"), 5)

    attempts = doc["attempts"]
    assert len(attempts) >= 4
    assert [a["status_code"] for a in attempts[:-1]] == [500] * (len(attempts) - 1)
    assert all(a["error"].startswith("HTTP 500") for a in attempts[:-1])
    assert attempts[-1]["status_code"] == 204 and attempts[-1]["error"] is None
    starts = [datetime.fromisoformat(a["at"]) for a in attempts]
    for n, (earlier, later) in enumerate(itertools.pairwise(starts), start=1):
        gap = (later - earlier).total_seconds()
        assert gap >= backoff_seconds(n, base) - 0.001, f"attempt {n + 1} came {gap:.3f}s after attempt {n}"
    assert all(r.verified for r in receiver.at("/a"))
    assert len({r.headers["baton-event-id"] for r in receiver.at("/a")}) == 1
    assert [r.headers["baton-attempt"] for r in receiver.at("/a")] == [str(n) for n in range(1, len(attempts) + 1)]


async def test_a_hanging_endpoint_does_not_delay_another_tenant(stores: Stores, receiver: Receiver) -> None:
    timeout = 3.0
    # Small bounds, so that tenant A alone could fill every slot and the whole due window.
    notifier = Notifier(
        stores.views,
        stores.deadlines,
        utc_now,
        fast_settings(webhook_timeout_seconds=timeout),
        concurrency=4,
        per_tenant=2,
        batch=10,
    )
    await notifier.set_endpoint("tenant-a", receiver.url("/a"), SECRET_A)
    await notifier.set_endpoint("tenant-b", receiver.url("/b"), SECRET_B)
    receiver.modes["/a"] = "hang"

    async with Running(notifier):
        for n in range(12):
            await notifier.notify("tenant-a", f"a-{n}", "handoff.offered", {"n": n})
        await eventually(receiver.got("/a", 2), 5)  # A's first two are hanging now
        started = time.monotonic()
        await notifier.notify("tenant-b", "b-1", "handoff.offered", {"agent_id": "ag-2"})
        await eventually(lambda: status_is(notifier, "tenant-b", "b-1", "delivered"), timeout)
        b_latency = time.monotonic() - started
        assert b_latency < timeout / 2, f"B took {b_latency:.2f}s behind a hanging A"
        assert receiver.max_in_progress["/a"] == 2  # A never held more than its bound

        async def a_timed_out() -> dict[str, Any] | None:
            for doc in await notifier.deliveries("tenant-a"):
                if doc["attempts"]:
                    return doc
            return None

        doc = await eventually(a_timed_out, timeout + 3)
        receiver.modes["/a"] = 200
        await receiver.stop()  # release hanging requests, so stopping is quick

    attempt = doc["attempts"][0]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("timeout")
    assert attempt["duration_ms"] >= timeout * 1000 * 0.9
    assert doc["status"] in ("pending", "in_flight")


async def test_notify_is_idempotent(stores: Stores, receiver: Receiver) -> None:
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings())
    await notifier.set_endpoint("acme", receiver.url("/a"), SECRET_A)
    await notifier.notify("acme", "same", "handoff.offered", {"first": True})
    await notifier.notify("acme", "same", "handoff.offered", {"second": True})
    assert await stores.views.count(DELIVERIES_VIEW, "acme") == 1
    assert await stores.deadlines.count(TIMER) == 1

    assert await notifier.deliver_due() == 1
    await notifier.notify("acme", "same", "handoff.offered", {"third": True})
    assert await notifier.deliver_due() == 0
    await notifier.aclose()

    (request,) = receiver.at("/a")
    assert request.json()["data"] == {"first": True}
    doc = await delivery(notifier, "acme", "same")
    assert doc["status"] == "delivered" and len(doc["attempts"]) == 1
    assert await stores.deadlines.count(TIMER) == 0


async def test_a_repeated_notify_restores_a_lost_wakeup(stores: Stores, receiver: Receiver) -> None:
    """The first notify died between its two writes (record saved, deadline not)."""
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings())
    await notifier.set_endpoint("acme", receiver.url("/a"), SECRET_A)
    await notifier.notify("acme", "lost", "promise.reminder", {})
    await stores.deadlines.cancel(TIMER, "acme", "lost")
    assert await notifier.deliver_due() == 0

    await notifier.notify("acme", "lost", "promise.reminder", {})
    assert await notifier.deliver_due() == 1
    await notifier.aclose()
    assert (await delivery(notifier, "acme", "lost"))["status"] == "delivered"


async def test_ids_that_cannot_be_headers_are_refused(stores: Stores) -> None:
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings())
    for bad in ("", "has space", "new\nline", "é", "x" * 257):
        with pytest.raises(ValueError, match="notification_id"):
            await notifier.notify("acme", bad, "handoff.offered", {})
    with pytest.raises(ValueError, match="kind"):
        await notifier.notify("acme", "ok", "handoff offered", {})
    assert await stores.views.count(DELIVERIES_VIEW) == 0
    assert "whsec" not in repr(await notifier.set_endpoint("acme", "https://crm.example.com/h", "whsec_" + "x" * 16))


async def test_no_endpoint_is_recorded_and_not_retried(stores: Stores) -> None:
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings())
    await notifier.notify("acme", "nowhere", "handoff.failed", {"handoff_id": "h-1"})
    assert await notifier.deliver_due() == 1
    doc = await delivery(notifier, "acme", "nowhere")
    assert doc["status"] == "no_endpoint"
    (attempt,) = doc["attempts"]
    assert attempt["status_code"] is None and "no webhook endpoint" in attempt["error"]
    assert await stores.deadlines.count(TIMER) == 0
    assert notifier.attempts_total == 0 and notifier.no_endpoint_total == 1


async def test_backoff_is_respected_and_attempts_are_bounded(stores: Stores) -> None:
    clock = ManualClock()
    receiver = await Receiver(secrets={"/a": SECRET_A}, now=lambda: int(clock().timestamp())).start()
    receiver.modes["/a"] = 503
    settings = fast_settings(webhook_retry_base_seconds=10.0, webhook_max_attempts=3)
    notifier = Notifier(stores.views, stores.deadlines, clock, settings)
    try:
        await notifier.set_endpoint("acme", receiver.url("/a"), SECRET_A)
        await notifier.notify("acme", "doomed", "escalation.raised", {"level": 2})

        assert await notifier.deliver_due() == 1
        doc = await delivery(notifier, "acme", "doomed")
        assert doc["status"] == "pending"
        assert datetime.fromisoformat(doc["next_attempt_at"]) == T0 + timedelta(seconds=10)

        clock.advance(9.999)
        assert await notifier.deliver_due() == 0  # not before the backoff
        clock.advance(0.001)
        assert await notifier.deliver_due() == 1
        doc = await delivery(notifier, "acme", "doomed")
        assert datetime.fromisoformat(doc["next_attempt_at"]) == clock() + timedelta(seconds=20)  # doubled

        clock.advance(19)
        assert await notifier.deliver_due() == 0
        clock.advance(1)
        assert await notifier.deliver_due() == 1
        doc = await delivery(notifier, "acme", "doomed")
        assert doc["status"] == "failed"
        assert [a["status_code"] for a in doc["attempts"]] == [503, 503, 503]
        assert doc["next_attempt_at"] is None
        assert await stores.deadlines.count(TIMER) == 0

        clock.advance(3600)
        assert await notifier.deliver_due() == 0
        assert len(receiver.at("/a")) == 3
        assert all(r.verified for r in receiver.at("/a"))
        assert (notifier.failed_total, notifier.attempts_total, notifier.delivered_total) == (1, 3, 0)
    finally:
        await notifier.aclose()
        await receiver.stop()


async def test_connection_errors_are_failed_attempts(stores: Stores) -> None:
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings(webhook_max_attempts=1))
    await notifier.set_endpoint("acme", f"http://127.0.0.1:{free_port()}/nobody-listens", SECRET_A)
    await notifier.notify("acme", "refused", "handoff.offered", {})
    assert await notifier.deliver_due() == 1
    await notifier.aclose()
    doc = await delivery(notifier, "acme", "refused")
    assert doc["status"] == "failed"
    (attempt,) = doc["attempts"]
    assert attempt["status_code"] is None and "Connect" in attempt["error"]


async def test_a_stale_lease_is_retaken_and_a_live_one_is_not(stores: Stores, receiver: Receiver) -> None:
    """A replica claimed the delivery and died mid-POST: after its lease expires,
    another replica delivers it and the history shows the abandoned attempt."""
    clock = ManualClock()
    receiver.now = lambda: int(clock().timestamp())
    notifier = Notifier(stores.views, stores.deadlines, clock, fast_settings())
    await notifier.set_endpoint("acme", receiver.url("/a"), SECRET_A)
    await notifier.notify("acme", "orphan", "promise.reminder", {})
    found = await stores.views.load(DELIVERIES_VIEW, "acme", "orphan")
    assert found is not None
    lease_until = T0 + timedelta(seconds=notifier.lease_seconds)
    claimed = {**found.doc, "status": "in_flight", "lease_id": "dead", "lease_until": lease_until.isoformat()}
    await stores.views.save(DELIVERIES_VIEW, "acme", "orphan", claimed, found.version + 1, found.version)

    assert await notifier.deliver_due() == 0  # the lease is live: hands off
    deadline = await stores.deadlines.get(TIMER, "acme", "orphan")
    assert deadline is not None and deadline.due_at == lease_until  # woken again when it ends
    clock.advance(notifier.lease_seconds)
    assert await notifier.deliver_due() == 1
    await notifier.aclose()

    doc = await delivery(notifier, "acme", "orphan")
    assert doc["status"] == "delivered"
    abandoned, delivered = doc["attempts"]
    assert abandoned["status_code"] is None and abandoned["error"].startswith("abandoned")
    assert delivered["status_code"] == 200
    assert len(receiver.at("/a")) == 1


async def test_two_replicas_post_each_notification_once(stores: Stores, receiver: Receiver) -> None:
    one = Notifier(stores.views, stores.deadlines, utc_now, fast_settings())
    # The second replica has its own connections to the same files, as another process would.
    views2 = await SqliteViewStore.open(stores.path)
    deadlines2 = await SqliteDeadlineStore.open(stores.path)
    two = Notifier(views2, deadlines2, utc_now, fast_settings())
    try:
        await one.set_endpoint("acme", receiver.url("/a"), SECRET_A)
        ids = [f"n-{i}" for i in range(40)]
        for nid in ids:
            await one.notify("acme", nid, "handoff.offered", {"id": nid})
        async with Running(one), Running(two):
            await eventually(receiver.got("/a", len(ids)), 10)

            async def all_delivered() -> bool:
                return len(await one.deliveries("acme", status="delivered")) == len(ids)

            await eventually(all_delivered, 5)
        posted = sorted(r.event_id for r in receiver.at("/a"))
        assert posted == sorted(ids), "a notification was POSTed twice (or never)"
        assert all(len(d["attempts"]) == 1 for d in await one.deliveries("acme"))
        assert one.delivered_total + two.delivered_total == len(ids)
    finally:
        await views2.close()
        await deadlines2.close()


class FlakyDeadlines(SqliteDeadlineStore):
    """A deadline store whose first reads of due deadlines fail."""

    failures = 3

    async def due(self, timer: str, now: datetime, limit: int = 100) -> list[Deadline]:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("store unavailable")
        return await super().due(timer, now, limit)


async def test_run_survives_store_errors(stores: Stores, receiver: Receiver) -> None:
    flaky = await FlakyDeadlines.open(stores.path)
    notifier = Notifier(stores.views, flaky, utc_now, fast_settings())
    try:
        await notifier.set_endpoint("acme", receiver.url("/a"), SECRET_A)
        async with Running(notifier):
            await notifier.notify("acme", "after-errors", "handoff.failed", {})
            await eventually(lambda: status_is(notifier, "acme", "after-errors", "delivered"), 5)
        assert flaky.failures == 0
    finally:
        await flaky.close()


async def test_deliveries_newest_first_and_by_status(stores: Stores) -> None:
    clock = ManualClock()
    notifier = Notifier(stores.views, stores.deadlines, clock, fast_settings())
    for n in range(3):
        await notifier.notify("acme", f"z-{n}", "handoff.offered", {})  # keys sort against time
        clock.advance(1)
    await notifier.notify("other", "elsewhere", "handoff.offered", {})
    assert [d["notification_id"] for d in await notifier.deliveries("acme")] == ["z-2", "z-1", "z-0"]
    assert [d["notification_id"] for d in await notifier.deliveries("acme", limit=2)] == ["z-2", "z-1"]
    assert await notifier.deliveries("acme", status="delivered") == []
    assert len(await notifier.deliveries("acme", status="pending")) == 3


# --- the HTTP API -----------------------------------------------------------------------


@pytest.fixture
async def api(stores: Stores) -> AsyncIterator[tuple[httpx.AsyncClient, Notifier]]:
    notifier = Notifier(stores.views, stores.deadlines, utc_now, fast_settings())
    app = FastAPI()
    install_problem_handlers(app)
    add_webhook_routes(app, notifier, default_tenant="acme")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://baton") as client:
        yield client, notifier
    await notifier.aclose()


async def test_put_then_get_hides_the_secret(api: tuple[httpx.AsyncClient, Notifier]) -> None:
    client, notifier = api
    missing = await client.get("/v1/webhooks")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["rule"] == "webhook_not_found"

    url = "https://crm.example.com/baton/hooks?src=baton"
    put = await client.put("/v1/webhooks", json={"url": url, "secret": SECRET_A})
    assert put.status_code == 200, put.text
    assert SECRET_A not in put.text
    assert put.json()["url"] == url  # kept exactly as registered
    assert (
        put.json()["secret_fingerprint"]
        == secret_fingerprint(SECRET_A)
        == hashlib.sha256(SECRET_A.encode()).hexdigest()[:8]
    )
    got = await client.get("/v1/webhooks")
    assert got.status_code == 200 and SECRET_A not in got.text
    assert got.json() == put.json()
    assert got.json()["tenant_id"] == "acme"

    other = await client.get("/v1/webhooks", headers={"X-Tenant-ID": "globex"})
    assert other.status_code == 404  # tenants do not see each other's endpoints
    endpoint = await notifier.endpoint("acme")
    assert endpoint is not None and endpoint.secret == SECRET_A


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"url": "not a url", "secret": SECRET_A}, "url"),
        ({"url": "ftp://crm.example.com/hooks", "secret": SECRET_A}, "url"),
        ({"url": "/relative/path", "secret": SECRET_A}, "url"),
        ({"url": "https://crm.example.com/hooks", "secret": "too-short"}, "secret"),
        ({"url": "https://crm.example.com/hooks"}, "secret"),
    ],
)
async def test_put_rejects_bad_input_with_a_problem(
    api: tuple[httpx.AsyncClient, Notifier], body: dict[str, str], field_name: str
) -> None:
    client, notifier = api
    response = await client.put("/v1/webhooks", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["rule"] == "validation"
    assert [e["field"] for e in problem["errors"]] == [field_name]
    assert await notifier.endpoint("acme") is None  # nothing changed


async def test_deliveries_api_shows_every_attempt(api: tuple[httpx.AsyncClient, Notifier], receiver: Receiver) -> None:
    client, notifier = api
    await notifier.notify("acme", "early", "handoff.failed", {"handoff_id": "h-0"})
    assert await notifier.deliver_due() == 1  # no endpoint yet
    put = await client.put("/v1/webhooks", json={"url": receiver.url("/a"), "secret": SECRET_A})
    assert put.status_code == 200
    receiver.modes["/a"] = 500
    later_id = "reminder-acme/c-1/p-1/reminder"  # ids may contain '/'
    await notifier.notify("acme", later_id, "handoff.offered", {"handoff_id": "h-1", "agent_id": "ag-1"})
    assert await notifier.deliver_due() == 1
    receiver.modes["/a"] = 200

    async def retried() -> bool:
        await notifier.deliver_due()
        return (await delivery(notifier, "acme", later_id))["status"] == "delivered"

    await eventually(retried, 5)

    listing = await client.get("/v1/webhooks/deliveries")
    assert listing.status_code == 200
    items = listing.json()["items"]
    assert [i["notification_id"] for i in items] == [later_id, "early"]
    later, early = items
    assert later["status"] == "delivered" and later["kind"] == "handoff.offered"
    assert [a["status_code"] for a in later["attempts"]] == [500, 200]
    assert later["attempts"][0]["error"].startswith("HTTP 500")
    assert later["payload"] == {"handoff_id": "h-1", "agent_id": "ag-1"}
    assert early["status"] == "no_endpoint" and early["attempts"][0]["status_code"] is None
    assert "lease_id" not in listing.text and SECRET_A not in listing.text

    only = await client.get("/v1/webhooks/deliveries", params={"status": "no_endpoint"})
    assert [i["notification_id"] for i in only.json()["items"]] == ["early"]
    bad = await client.get("/v1/webhooks/deliveries", params={"status": "lost"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
    one = await client.get(f"/v1/webhooks/deliveries/{later_id}")
    assert one.status_code == 200 and one.json() == later
    unknown = await client.get("/v1/webhooks/deliveries/nope")
    assert unknown.status_code == 404 and unknown.json()["rule"] == "delivery_not_found"
    elsewhere = await client.get("/v1/webhooks/deliveries", headers={"X-Tenant-ID": "globex"})
    assert elsewhere.json()["items"] == []


async def test_openapi_documents_the_webhook_routes(api: tuple[httpx.AsyncClient, Notifier]) -> None:
    client, _ = api
    spec = (await client.get("/openapi.json")).json()
    assert {"put", "get"} <= set(spec["paths"]["/v1/webhooks"])
    assert "/v1/webhooks/deliveries" in spec["paths"]
    put = spec["paths"]["/v1/webhooks"]["put"]
    assert put["summary"] and put["description"]
    schema = spec["components"]["schemas"]["WebhookRegistration"]
    assert schema["examples"][0]["url"].startswith("https://")
