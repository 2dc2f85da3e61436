"""Notifications to the CRM from the real followup process: signed, retried, never blocking."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from runtime.natsserver import NatsServer
from tests.e2e.test_handoffs import Api, uid
from tests.e2e.test_promises import promise, staff, stream
from tests.followup.test_notifications import Receiver
from tests.support import System, eventually

pytestmark = [pytest.mark.slow, pytest.mark.nats]

SECRET = "a-very-secret-webhook-key"


async def test_escalations_reach_a_failing_then_recovering_crm(tmp_path: Path, nats_server: NatsServer) -> None:
    system = System.create(
        tmp_path,
        nats_server.url,
        BATON_REMINDER_LEAD="PT1S",
        BATON_WEBHOOK_RETRY_BASE_SECONDS="0.3",
        BATON_ESCALATION_LEVEL2_AFTER="PT1H",
    )
    receiver = await Receiver(secrets={"/crm": SECRET}, modes={"/crm": 500}).start()
    await system.start()
    try:
        tenant, suffix = uid("t"), uuid4().hex[:6]
        api = Api(system, tenant)
        ids = await staff(api, suffix)
        async with httpx.AsyncClient(base_url=system["followup"].url, headers={"X-Tenant-ID": tenant}) as followup:
            r = await followup.put("/v1/webhooks", json={"url": receiver.url("/crm"), "secret": SECRET})
            assert r.status_code == 200, r.text
            assert SECRET not in r.text
            first, second = uid("cust"), uid("cust")
            for customer in (first, second):
                await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
            await promise(api, first, ids["a"], within="PT2S")

            await eventually(receiver.got("/crm", 3), timeout=20, message="three failed attempts (500)")
            # While the CRM keeps failing, the ladder is not slowed down: a second promise escalates on time.
            second_id = await promise(api, second, ids["a"], within="PT2S")

            async def escalated() -> list:
                events = await stream(system, tenant, second)
                return [e for e in events if e.event_type == "EscalationRaised"]

            [raised] = await eventually(escalated, timeout=15)
            promised = next(e for e in await stream(system, tenant, second) if e.event_type == "CallbackPromised")
            due = datetime.fromisoformat(json.loads(promised.data)["due_at"])
            assert (raised.recorded_at - due).total_seconds() < 1.0
            assert json.loads(raised.data)["promise_id"] == second_id

            receiver.modes["/crm"] = 200  # the CRM recovers

            async def delivered() -> list:
                r = await followup.get("/v1/webhooks/deliveries", params={"status": "delivered"})
                items = [d for d in r.json()["items"] if d["kind"] == "escalation.raised"]
                return items if len(items) >= 2 else []

            items = await eventually(delivered, timeout=30, message="escalations delivered after recovery")
            retried = next(d for d in items if d["payload"]["customer_id"] == first)
            statuses = [a.get("status_code") for a in retried["attempts"]]
            assert statuses[:3] == [500, 500, 500] and statuses[-1] == 200, statuses
        assert all(r.verified for r in receiver.at("/crm")), "every request carries a valid signature"
        kinds = {r.json()["type"] for r in receiver.at("/crm")}
        assert {"escalation.raised", "promise.reminder"} <= kinds
        ok = [r for r in receiver.at("/crm") if r.json()["type"] == "escalation.raised"]
        assert {r.json()["data"]["to_agent_id"] for r in ok} == {ids["sup"]}
    finally:
        await receiver.stop()
        system.stop()
