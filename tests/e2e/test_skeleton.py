"""The walking skeleton end to end: NATS and the three services as real processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from uuid import uuid4

import httpx
import nats
import pytest

from runtime.natsserver import NatsServer
from runtime.store.sqlite import SqliteEventStore
from tests.support import System, eventually

pytestmark = [pytest.mark.slow, pytest.mark.nats]


def store_of(system: System) -> SqliteEventStore:
    return SqliteEventStore(Path(system.store_url.removeprefix("sqlite:///")))


async def all_events(store: SqliteEventStore) -> list:
    events, after = [], 0
    while batch := await store.read_all(after_position=after, limit=1000):
        events.extend(batch)
        after = batch[-1].position
    return events


async def jetstream_msg_ids(nats_url: str, stream: str) -> Counter[str]:
    """Every message in the JetStream stream, counted by Nats-Msg-Id."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        ids: Counter[str] = Counter()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            ids[(msg.headers or {}).get("Nats-Msg-Id", "")] += 1
        return ids
    finally:
        await nc.close()


@pytest.fixture
async def system(tmp_path: Path, nats_server: NatsServer):
    system = System.create(tmp_path, nats_server.url)
    yield system
    system.stop()


async def test_server_config_syncs_every_write(nats_server: NatsServer) -> None:
    js_config = nats_server.varz()["jetstream"]["config"]  # type: ignore[index]
    assert js_config["sync_always"] is True


async def test_200_customers_every_event_stored_and_consumed_once(system: System) -> None:
    await system.start()
    customers = [f"cust-{uuid4().hex[:10]}" for _ in range(200)]
    async with httpx.AsyncClient(base_url=system["intake"].url, timeout=30) as client:
        limit = asyncio.Semaphore(40)

        async def open_contact(customer: str) -> httpx.Response:
            async with limit:
                return await client.post(
                    f"/v1/customers/{customer}/contacts",
                    json={"agent_id": f"agent-{customer[-2:]}", "channel": "phone"},
                )

        responses = await asyncio.gather(*(open_contact(c) for c in customers))
    assert [r.status_code for r in responses] == [201] * 200, [r.text for r in responses if r.status_code != 201][:3]

    store = store_of(system)
    try:
        events = await all_events(store)
        assert len(events) == 400  # ContactOpened + OwnerAssigned per customer
        assert len({e.event_id for e in events}) == 400
        assert Counter(e.event_type for e in events) == {"ContactOpened": 200, "OwnerAssigned": 200}

        async def views_complete(service: str, path: str) -> bool:
            async with httpx.AsyncClient(base_url=system[service].url, timeout=10) as client:
                for customer in customers:
                    r = await client.get(path.format(customer))
                    if r.status_code != 200:
                        return False
                    doc = r.json()
                    # applied exactly once each: two events, two applications
                    assert doc["view_version"] == 2, doc
                    assert doc["events_applied"] == 2, doc
            return True

        await eventually(
            lambda: views_complete("routing", "/v1/ownership/{}"),
            timeout=60,
            message="routing's view has every customer",
        )
        await eventually(
            lambda: views_complete("followup", "/v1/followup/customers/{}"),
            timeout=60,
            message="followup's view has every customer",
        )
        async with httpx.AsyncClient(base_url=system["routing"].url) as client:
            doc = (await client.get(f"/v1/ownership/{customers[0]}")).json()
            assert doc["owner_id"] == f"agent-{customers[0][-2:]}"

        async def all_published() -> bool:
            return await store.unpublished() == []

        await eventually(all_published, message="outbox drained")
        ids = await jetstream_msg_ids(system.env["BATON_NATS_URL"], system.env["BATON_NATS_STREAM"])
        assert set(ids) == {str(e.event_id) for e in events}
        assert max(ids.values()) == 1
        for service in ("routing", "followup"):
            async with httpx.AsyncClient(base_url=system[service].url) as client:
                assert (await client.get("/v1/admin/parked")).json()["items"] == []
    finally:
        await store.close()


async def test_intake_dies_between_append_and_publish(system: System) -> None:
    await system.start("routing", "followup")
    intake = system["intake"]
    intake.start(BATON_FAULT="exit_after_append")
    await intake.wait_ready()
    customer = f"cust-{uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=intake.url, timeout=10) as client:
        with pytest.raises(httpx.HTTPError):
            await client.post(f"/v1/customers/{customer}/contacts", json={"agent_id": "alice"})
    assert intake.process is not None
    assert intake.process.wait(10) == 70  # the fault switch fired after the append

    store = store_of(system)
    try:
        appended = await store.read_stream("default", f"customer:{customer}")
        assert [e.event_type for e in appended] == ["ContactOpened", "OwnerAssigned"]

        intake.start()  # restart without the fault
        await intake.wait_ready()

        async def consumed(service: str, path: str) -> dict:
            async with httpx.AsyncClient(base_url=system[service].url) as client:
                r = await client.get(path)
                return r.json() if r.status_code == 200 and r.json()["view_version"] == 2 else {}

        for service, path in (
            ("routing", f"/v1/ownership/{customer}"),
            ("followup", f"/v1/followup/customers/{customer}"),
        ):
            doc = await eventually(
                lambda s=service, p=path: consumed(s, p),
                timeout=30,
                message=f"{service} consumed the recovered events",
            )
            assert doc["events_applied"] == 2

        async def drained() -> bool:
            return await store.unpublished() == []

        await eventually(drained, message="outbox drained after restart")
        ids = await jetstream_msg_ids(system.env["BATON_NATS_URL"], system.env["BATON_NATS_STREAM"])
        for event in appended:
            assert ids[str(event.event_id)] == 1
        async with httpx.AsyncClient(base_url=intake.url) as client:
            body = (await client.get(f"/v1/customers/{customer}")).json()
            assert body["owner"]["agent_id"] == "alice"
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent_id"),
        ({"agent_id": ""}, "agent_id"),
        ({"agent_id": "a b"}, "agent_id"),
        ({"agent_id": "alice", "channel": "pigeon"}, "channel"),
        ({"agent_id": "alice", "surprise": 1}, "surprise"),
    ],
)
async def test_malformed_requests_get_problem_details_and_change_nothing(
    tmp_path: Path, nats_server: NatsServer, body: dict, field: str
) -> None:
    system = System.create(tmp_path, nats_server.url)
    try:
        await system.start("intake")
        store = store_of(system)
        before = len(await all_events(store))
        async with httpx.AsyncClient(base_url=system["intake"].url) as client:
            r = await client.post("/v1/customers/cust-1/contacts", json=body)
            assert r.status_code == 422
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert problem["status"] == 422 and problem["title"] and problem["type"]
            assert field in [e["field"] for e in problem["errors"]], problem
            assert field in problem["detail"]
            bad = await client.post(
                "/v1/customers/cust-1/contacts",
                content=b"{not json",
                headers={"content-type": "application/json"},
            )
            assert bad.status_code == 422
            bad_id = await client.post("/v1/customers/bad%20id/contacts", json={"agent_id": "alice"})
            assert bad_id.status_code == 422 and bad_id.json()["errors"][0]["field"] == "customer_id"
            bad_tenant = await client.post(
                "/v1/customers/c1/contacts",
                json={"agent_id": "alice"},
                headers={"X-Tenant-ID": "no/slash"},
            )
            assert bad_tenant.status_code == 422
            assert (await client.get("/v1/customers/cust-1")).status_code == 404
        assert len(await all_events(store)) == before
        await store.close()
    finally:
        system.stop()
