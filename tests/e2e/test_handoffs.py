"""Warm hand-offs end to end: real NATS, real intake/routing/followup processes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from runtime.natsserver import NatsServer
from tests.e2e.test_skeleton import store_of
from tests.support import System, eventually

pytestmark = [pytest.mark.slow, pytest.mark.nats]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


class Api:
    """A thin client for the intake API used by the scenarios."""

    def __init__(self, system: System, tenant: str) -> None:
        self.client = httpx.AsyncClient(base_url=system["intake"].url, timeout=20, headers={"X-Tenant-ID": tenant})
        self.tenant = tenant

    async def agent(self, agent_id: str, **entry: Any) -> None:
        r = await self.client.put(f"/v1/agents/{agent_id}", json={"name": agent_id.title(), **entry})
        assert r.status_code in (200, 201), r.text

    async def customer(self, customer: str) -> dict[str, Any]:
        r = await self.client.get(f"/v1/customers/{customer}")
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.client.post(path, json=body, headers=headers)

    async def live_offer(self, customer: str, attempt: int) -> dict[str, Any]:
        async def probe() -> dict[str, Any]:
            pending = (await self.customer(customer))["pending_handoff"]
            offers = pending["offers"] if pending else []
            if len(offers) >= attempt and offers[attempt - 1]["outcome"] is None:
                return offers[attempt - 1]
            return {}

        return await eventually(probe, timeout=30, message=f"offer #{attempt} made")


async def team(api: Api, suffix: str) -> dict[str, str]:
    """A supervisor, a requesting agent and two billing agents."""
    ids = {"sup": f"sup-{suffix}", "a": f"a-{suffix}", "b": f"b-{suffix}", "c": f"c-{suffix}"}
    await api.agent(ids["sup"], role="supervisor", teams=["support"])
    await api.agent(ids["a"], teams=["support"], supervisor_id=ids["sup"])
    await api.agent(ids["b"], teams=[f"billing-{suffix}"], supervisor_id=ids["sup"])
    await api.agent(ids["c"], teams=[f"billing-{suffix}"], supervisor_id=ids["sup"])
    return ids


async def request_handoff(api: Api, customer: str, frm: str, team_name: str) -> str:
    r = await api.post(
        f"/v1/customers/{customer}/handoffs",
        {
            "from_agent_id": frm,
            "target": {"kind": "team", "team": team_name},
            "reason": "needs_expertise",
            "recap": "Double charge on the November invoice; customer already sent the bank statement.",
            "customer_informed": True,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["handoff_id"])


async def event_types(system: System, tenant: str, customer: str) -> list[str]:
    store = store_of(system)
    try:
        return [e.event_type for e in await store.read_stream(tenant, f"customer:{customer}")]
    finally:
        await store.close()


@pytest.fixture
async def system(tmp_path: Path, nats_server: NatsServer):
    system = System.create(tmp_path, nats_server.url, BATON_OFFER_TTL_SECONDS="60")
    await system.start()
    yield system
    system.stop()


async def test_warm_handoff_decline_then_accept(system: System) -> None:
    tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
    api = Api(system, tenant)
    ids = await team(api, suffix)
    r = await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
    assert r.status_code == 201
    for text in ("Customer disputes invoice 2026-11", "Bank statement received by email"):
        r = await api.post(f"/v1/customers/{customer}/contacts/k1/notes", {"author_id": ids["a"], "text": text})
        assert r.status_code == 201, r.text
    handoff = await request_handoff(api, customer, ids["a"], f"billing-{suffix}")

    first = await api.live_offer(customer, 1)
    assert first["agent_id"] == ids["b"]  # least open work, ties by id
    assert (await api.customer(customer))["owner"]["agent_id"] == ids["a"]
    pending = (await api.customer(customer))["pending_handoff"]
    assert pending["recap"].startswith("Double charge") and len(pending["notes"]) == 2
    r = await api.post(
        f"/v1/customers/{customer}/handoffs/{handoff}/decline", {"agent_id": ids["b"], "reason": "not my product line"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["owner"]["agent_id"] == ids["a"]

    second = await api.live_offer(customer, 2)
    assert second["agent_id"] == ids["c"]
    assert (await api.customer(customer))["owner"]["agent_id"] == ids["a"]
    r = await api.post(f"/v1/customers/{customer}/handoffs/{handoff}/accept", {"agent_id": ids["c"]})
    assert r.status_code == 200, r.text
    body = await api.customer(customer)
    assert body["owner"]["agent_id"] == ids["c"] and body["owner"]["cause"] == "handoff_accepted"
    assert body["owner"]["recap"].startswith("Double charge") and body["pending_handoff"] is None
    types = await event_types(system, tenant, customer)
    assert types == [
        "ContactOpened",
        "OwnerAssigned",
        "NoteAdded",
        "NoteAdded",
        "HandoffRequested",
        "HandoffOffered",
        "HandoffDeclined",
        "HandoffOffered",
        "HandoffAccepted",
        "OwnerAssigned",
    ]

    async def agent_owns(agent: str) -> bool:
        r = await api.client.get(f"/v1/agents/{agent}/customers")
        return [c["customer_id"] for c in r.json()["customers"]] == [customer]

    await eventually(lambda: agent_owns(ids["c"]), message="C lists the customer")
    await api.client.aclose()


async def test_twenty_concurrent_accepts_one_wins(system: System) -> None:
    tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
    api = Api(system, tenant)
    ids = await team(api, suffix)
    await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
    handoff = await request_handoff(api, customer, ids["a"], f"billing-{suffix}")
    offer = await api.live_offer(customer, 1)
    offered, other = offer["agent_id"], ids["c"] if offer["agent_id"] == ids["b"] else ids["b"]
    accepts = [offered] * 15 + [other] * 5
    responses = await asyncio.gather(
        *(api.post(f"/v1/customers/{customer}/handoffs/{handoff}/accept", {"agent_id": agent}) for agent in accepts)
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 1, [r.text for r in responses]
    assert statuses[200] + statuses[403] + statuses[409] == 20
    assert all(
        r.json()["rule"] in {"handoff_already_accepted", "offer_is_for_another_agent"}
        for r in responses
        if r.status_code != 200
    )
    types = await event_types(system, tenant, customer)
    assert Counter(types)["OwnerAssigned"] == 2 and Counter(types)["HandoffAccepted"] == 1
    assert (await api.customer(customer))["owner"]["agent_id"] == offered
    await api.client.aclose()


async def test_idempotency_key_replays_the_first_answer(system: System) -> None:
    tenant, customer = uid("t"), uid("cust")
    api = Api(system, tenant)
    body = {"contact_id": "k1", "agent_id": "alice"}
    first = await api.post(f"/v1/customers/{customer}/contacts", body, **{"Idempotency-Key": "k-1"})
    again = await api.post(f"/v1/customers/{customer}/contacts", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other = await api.post(
        f"/v1/customers/{customer}/contacts", {**body, "channel": "email"}, **{"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422 and other.json()["rule"] == "idempotency_key_reused"
    note = {"author_id": "alice", "text": "hello"}
    n1 = await api.post(f"/v1/customers/{customer}/contacts/k1/notes", note, **{"Idempotency-Key": "n-1"})
    n2 = await api.post(f"/v1/customers/{customer}/contacts/k1/notes", note, **{"Idempotency-Key": "n-1"})
    assert n1.json() == n2.json()
    assert await event_types(system, tenant, customer) == ["ContactOpened", "OwnerAssigned", "NoteAdded"]
    await api.client.aclose()


async def test_rules_are_named_and_change_nothing(system: System) -> None:
    tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
    api = Api(system, tenant)
    ids = await team(api, suffix)
    await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
    before = await event_types(system, tenant, customer)
    base = {"target": {"kind": "team", "team": "x"}, "reason": "capacity", "recap": "r", "customer_informed": True}
    cases = [
        ("/handoffs", {**base, "from_agent_id": ids["b"]}, 403, "only_owner_may_hand_off"),
        ("/handoffs", {**base, "from_agent_id": ids["a"], "recap": "  "}, 422, "validation"),
        (
            "/handoffs",
            {**base, "from_agent_id": ids["a"], "customer_informed": False},
            409,
            "customer_must_be_informed",
        ),
        ("/contacts/k1/close", {"agent_id": ids["b"], "resolution": "x"}, 403, "only_owner_closes_loop"),
        ("/contacts/nope/notes", {"author_id": ids["a"], "text": "x"}, 404, "contact_not_found"),
        ("/handoffs/ho-x/accept", {"agent_id": ids["b"]}, 404, "handoff_not_found"),
    ]
    for path, body, status, rule in cases:
        r = await api.post(f"/v1/customers/{customer}{path}", body)
        assert (r.status_code, r.json()["rule"]) == (status, rule), r.text
    await request_handoff(api, customer, ids["a"], f"billing-{suffix}")
    second = await api.post(f"/v1/customers/{customer}/handoffs", {**base, "from_agent_id": ids["a"]})
    assert (second.status_code, second.json()["rule"]) == (409, "one_pending_handoff")
    close = await api.post(f"/v1/customers/{customer}/contacts/k1/close", {"agent_id": ids["a"], "resolution": "x"})
    assert (close.status_code, close.json()["rule"]) == (409, "pending_handoff")
    after = await event_types(system, tenant, customer)
    assert after[: len(before)] == before and "LoopClosed" not in after
    assert after.count("HandoffRequested") == 1
    await api.client.aclose()


async def test_all_offers_expire_then_the_supervisor_is_escalated(tmp_path: Path, nats_server: NatsServer) -> None:
    system = System.create(tmp_path, nats_server.url, BATON_OFFER_TTL_SECONDS="1")
    await system.start()
    try:
        tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
        api = Api(system, tenant)
        ids = await team(api, suffix)
        await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
        await request_handoff(api, customer, ids["a"], f"billing-{suffix}")

        async def failed() -> list[str]:
            types = await event_types(system, tenant, customer)
            return types if "EscalationRaised" in types else []

        types = await eventually(failed, timeout=30, message="hand-off failed and escalated")
        assert types == [
            "ContactOpened",
            "OwnerAssigned",
            "HandoffRequested",
            "HandoffOffered",
            "HandoffDeclined",
            "HandoffOffered",
            "HandoffDeclined",
            "HandoffFailed",
            "EscalationRaised",
        ]
        store = store_of(system)
        events = await store.read_stream(tenant, f"customer:{customer}")
        await store.close()
        escalation = json.loads(events[-1].data)
        assert escalation["to_agent_id"] == ids["sup"] and escalation["level"] == 1
        assert all(json.loads(e.data).get("expired") for e in events if e.event_type == "HandoffDeclined")
        assert (await api.customer(customer))["owner"]["agent_id"] == ids["a"]
        await api.client.aclose()
    finally:
        system.stop()


async def test_routing_killed_while_an_offer_is_pending(tmp_path: Path, nats_server: NatsServer) -> None:
    system = System.create(tmp_path, nats_server.url, BATON_OFFER_TTL_SECONDS="2")
    await system.start()
    try:
        tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
        api = Api(system, tenant)
        ids = await team(api, suffix)
        await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
        await request_handoff(api, customer, ids["a"], f"billing-{suffix}")
        first = await api.live_offer(customer, 1)
        system["routing"].kill()  # SIGKILL while the offer is pending

        expires = datetime.fromisoformat(first["expires_at"])

        async def past_expiry() -> bool:
            return datetime.now(UTC) > expires

        await eventually(past_expiry, timeout=10)
        system["routing"].start()
        await system["routing"].wait_ready()
        second = await api.live_offer(customer, 2)
        assert second["agent_id"] != first["agent_id"]

        async def settled() -> list[str]:
            types = await event_types(system, tenant, customer)
            return types if "EscalationRaised" in types else []

        types = await eventually(settled, timeout=30)
        declined_first = [t for t in types if t == "HandoffDeclined"]
        assert types[:6] == [
            "ContactOpened",
            "OwnerAssigned",
            "HandoffRequested",
            "HandoffOffered",
            "HandoffDeclined",
            "HandoffOffered",
        ]
        assert types.count("HandoffOffered") == 2 and len(declined_first) == 2
        assert types.count("HandoffFailed") == 1 and types.count("EscalationRaised") == 1
        await api.client.aclose()
    finally:
        system.stop()
