"""Callback promises end to end: durable deadlines, the escalation ladder, replicas."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from runtime.natsserver import NatsServer, free_port
from runtime.store.port import RecordedEvent
from tests.e2e.test_handoffs import Api, uid
from tests.e2e.test_skeleton import all_events, store_of
from tests.support import ServiceProcess, System, eventually

pytestmark = [pytest.mark.slow, pytest.mark.nats]


async def stream(system: System, tenant: str, customer: str) -> list[RecordedEvent]:
    store = store_of(system)
    try:
        return await store.read_stream(tenant, f"customer:{customer}")
    finally:
        await store.close()


def data(event: RecordedEvent) -> dict:
    return dict(json.loads(event.data))


async def staff(api: Api, suffix: str) -> dict[str, str]:
    ids = {"mgr": f"mgr-{suffix}", "sup": f"sup-{suffix}", "a": f"a-{suffix}"}
    await api.agent(ids["mgr"], role="manager")
    await api.agent(ids["sup"], role="supervisor", supervisor_id=ids["mgr"])
    await api.agent(ids["a"], supervisor_id=ids["sup"])
    return ids


async def promise(api: Api, customer: str, agent: str, **due: str) -> str:
    r = await api.post(
        f"/v1/customers/{customer}/promises",
        {"contact_id": "k1", "promised_by": agent, "what": "Call back with the refund status", **due},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["promise_id"])


@pytest.fixture
async def system(tmp_path: Path, nats_server: NatsServer):
    system = System.create(tmp_path, nats_server.url, BATON_REMINDER_LEAD="PT1S", BATON_ESCALATION_LEVEL2_AFTER="PT2S")
    await system.start()
    yield system
    system.stop()


async def test_broken_promise_escalates_once_then_climbs_kept_promise_does_not(system: System) -> None:
    tenant, suffix = uid("t"), uuid4().hex[:6]
    api = Api(system, tenant)
    ids = await staff(api, suffix)
    broken_customer, kept_customer = uid("cust"), uid("cust")
    for customer in (broken_customer, kept_customer):
        r = await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
        assert r.status_code == 201
    broken = await promise(api, broken_customer, ids["a"], within="PT2S")
    kept = await promise(api, kept_customer, ids["a"], within="PT2S")
    r = await api.post(
        f"/v1/customers/{kept_customer}/promises/{kept}/complete",
        {"agent_id": ids["a"], "outcome": "Called, refund confirmed"},
    )
    assert r.status_code == 200 and r.json()["status"] == "kept"

    async def escalated_twice() -> list[RecordedEvent]:
        events = await stream(system, tenant, broken_customer)
        return events if Counter(e.event_type for e in events)["EscalationRaised"] >= 2 else []

    events = await eventually(escalated_twice, timeout=20, message="level 1 then level 2")
    types = [e.event_type for e in events]
    assert Counter(types)["PromiseBroken"] == 1 and Counter(types)["EscalationRaised"] == 2
    promised = next(e for e in events if e.event_type == "CallbackPromised")
    level1, level2 = [e for e in events if e.event_type == "EscalationRaised"]
    due_at = datetime.fromisoformat(data(promised)["due_at"])
    assert data(level1)["level"] == 1 and data(level1)["to_agent_id"] == ids["sup"]
    assert data(level1)["promise_id"] == broken
    lag = (level1.recorded_at - due_at).total_seconds()
    assert 0 <= lag < 1.0, f"escalated {lag:.3f}s after the due time"
    assert data(level2)["level"] == 2 and data(level2)["to_agent_id"] == ids["mgr"]

    kept_types = [e.event_type for e in await stream(system, tenant, kept_customer)]
    assert "PromiseBroken" not in kept_types and "EscalationRaised" not in kept_types

    open_escalations = (await api.client.get("/v1/escalations", params={"status": "open"})).json()["items"]
    assert {e["escalation_id"] for e in open_escalations} >= {data(level1)["escalation_id"]}
    # an agent may not acknowledge; the supervisor may, once
    esc = data(level2)["escalation_id"]

    async def indexed() -> bool:
        items = (await api.client.get("/v1/escalations")).json()["items"]
        return esc in {e["escalation_id"] for e in items}

    await eventually(indexed, message="escalation indexed")
    denied = await api.post(f"/v1/escalations/{esc}/acknowledge", {"agent_id": ids["a"]})
    assert (denied.status_code, denied.json()["rule"]) == (403, "only_supervisors_acknowledge")
    ok = await api.post(f"/v1/escalations/{esc}/acknowledge", {"agent_id": ids["mgr"]})
    assert ok.status_code == 200, ok.text
    again = await api.post(f"/v1/escalations/{esc}/acknowledge", {"agent_id": ids["mgr"]})
    assert (again.status_code, again.json()["rule"]) == (409, "escalation_already_acknowledged")

    # kept late: the promise resolves and its escalations with it
    late = await api.post(
        f"/v1/customers/{broken_customer}/promises/{broken}/complete",
        {"agent_id": ids["a"], "outcome": "Finally reached them"},
    )
    assert late.status_code == 200 and late.json()["status"] == "kept_late"
    await api.client.aclose()


async def test_promise_validation(system: System) -> None:
    tenant, customer = uid("t"), uid("cust")
    api = Api(system, tenant)
    await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": "a"})
    base = {"contact_id": "k1", "promised_by": "a", "what": "call back"}
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    cases = [
        ({**base}, 422, "due_at"),
        ({**base, "within": "PT1H", "due_at": far}, 422, "due_at"),
        ({**base, "within": "one hour"}, 422, "within"),
        ({**base, "due_at": past}, 422, "due_at"),
        ({**base, "due_at": far}, 422, "due_at"),
        ({**base, "due_at": "2030-01-01T10:00:00"}, 422, "due_at"),
        ({**base, "contact_id": "nope", "within": "PT1H"}, 404, None),
    ]
    for body, status, field in cases:
        r = await api.post(f"/v1/customers/{customer}/promises", body)
        assert r.status_code == status, (body, r.text)
        if field:
            assert field in [e["field"] for e in r.json()["errors"]], r.text
    pid = await promise(api, customer, "a", within="PT1H")
    close = await api.post(f"/v1/customers/{customer}/contacts/k1/close", {"agent_id": "a", "resolution": "done"})
    assert (close.status_code, close.json()["rule"]) == (409, "open_promises")
    assert close.json()["open_promises"] == [pid]
    cancel = await api.post(f"/v1/customers/{customer}/promises/{pid}/cancel", {"reason": "customer withdrew"})
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    close = await api.post(f"/v1/customers/{customer}/contacts/k1/close", {"agent_id": "a", "resolution": "done"})
    assert close.status_code == 200, close.text
    await api.client.aclose()


async def test_followup_killed_before_due_escalates_once_after_restart(system: System) -> None:
    tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
    api = Api(system, tenant)
    ids = await staff(api, suffix)
    await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
    due = datetime.now(UTC) + timedelta(seconds=3)
    await promise(api, customer, ids["a"], due_at=due.isoformat())

    async def scheduled() -> bool:
        r = await httpx.AsyncClient().get(
            f"{system['followup'].url}/v1/followup/customers/{customer}", headers={"X-Tenant-ID": tenant}
        )
        return r.status_code == 200 and r.json()["open_promises"] == 1

    await eventually(scheduled, message="followup saw the promise")
    system["followup"].kill()

    async def past_due() -> bool:
        return datetime.now(UTC) > due + timedelta(seconds=1)

    await eventually(past_due, timeout=10)
    assert "EscalationRaised" not in [e.event_type for e in await stream(system, tenant, customer)]
    system["followup"].start()
    await system["followup"].wait_ready()

    async def escalated() -> list[RecordedEvent]:
        events = await stream(system, tenant, customer)
        return events if any(e.event_type == "EscalationRaised" for e in events) else []

    await eventually(escalated, timeout=15)
    types = Counter(e.event_type for e in await stream(system, tenant, customer))
    assert types["PromiseBroken"] == 1 and types["EscalationRaised"] == 1
    await api.client.aclose()


async def test_two_followup_replicas_escalate_1000_promises_exactly_once(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    system = System.create(tmp_path, nats_server.url, BATON_ESCALATION_LEVEL2_AFTER="PT1H")
    second = ServiceProcess(
        "followup", {**system.env, "BATON_FOLLOWUP_PORT": str(free_port())}, 0, tmp_path / "followup-2.log"
    )
    second.port = int(second.env["BATON_FOLLOWUP_PORT"])
    await system.start()
    second.start()
    await second.wait_ready()
    try:
        tenant, suffix = uid("t"), uuid4().hex[:6]
        api = Api(system, tenant)
        ids = await staff(api, suffix)
        due = (datetime.now(UTC) + timedelta(seconds=40)).replace(microsecond=0)
        customers = [uid("c") for _ in range(1000)]
        gate = asyncio.Semaphore(24)

        async def setup(customer: str) -> None:
            async with gate:
                r = await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
                assert r.status_code == 201, r.text
                await promise(api, customer, ids["a"], due_at=due.isoformat())

        await asyncio.gather(*(setup(c) for c in customers))
        assert datetime.now(UTC) < due, "set-up took longer than the due time allows"
        store = store_of(system)

        async def all_escalated() -> list[RecordedEvent]:
            events = [
                e for e in await all_events(store) if e.tenant_id == tenant and e.event_type == "EscalationRaised"
            ]
            return events if len(events) >= 1000 else []

        try:
            await eventually(all_escalated, timeout=120, interval=1.0, message="1,000 escalations")
            everything = [e for e in await all_events(store) if e.tenant_id == tenant]
        finally:
            await store.close()
        raised = [e for e in everything if e.event_type == "EscalationRaised"]
        broken = [e for e in everything if e.event_type == "PromiseBroken"]
        assert len(raised) == 1000 and len(broken) == 1000
        assert len({data(e)["escalation_id"] for e in raised}) == 1000
        assert {e.stream for e in raised} == {f"customer:{c}" for c in customers}
    finally:
        second.stop()
        system.stop()
