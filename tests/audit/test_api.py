"""intake's audit routes over a real SQLite store (in-process: no NATS, no service processes)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from runtime.compose import build_runtime
from runtime.config import Settings
from runtime.store.sqlite import SqliteEventStore, SqliteViewStore
from runtime.web import install_problem_handlers
from services.intake.audit_routes import add_audit_routes, load_state_as_of
from tests.audit.scenario import AGENTS, OWNERS_AT, at, register_agents, write_scenario

TENANT = "acme"


@dataclass
class Api:
    client: httpx.AsyncClient
    store: SqliteEventStore
    path: Path


def audit_app(store: SqliteEventStore, views: SqliteViewStore, path: Path) -> FastAPI:
    """A bare app with the audit routes around a runtime (no lifespan: nothing connects)."""
    settings = Settings(store_url=f"sqlite:///{path}", default_tenant=TENANT)
    runtime = build_runtime("intake", settings, store=store, views=views, clock=lambda: at(300))
    app = FastAPI()
    install_problem_handlers(app)
    add_audit_routes(app, runtime)
    return app


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    path = tmp_path / "baton.db"
    store = await SqliteEventStore.open(path)
    views = await SqliteViewStore.open(tmp_path / "views.db")
    await register_agents(store, TENANT)
    await write_scenario(store, TENANT, "cust-1")
    transport = httpx.ASGITransport(app=audit_app(store, views, path))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        yield Api(client, store, path)
    await store.close()
    await views.close()


async def test_events_are_paged_with_their_chain_links(api: Api) -> None:
    first = (await api.client.get("/v1/customers/cust-1/events", params={"limit": 5})).json()
    assert [e["stream_version"] for e in first["items"]] == [1, 2, 3, 4, 5]
    assert first["items"][0]["previous_hash"] == "0" * 64
    assert first["items"][1]["previous_hash"] == first["items"][0]["hash"]
    assert first["items"][2]["payload"]["text"] == "Charged twice on 3 Nov"
    assert first["items"][0]["event_type"] == "ContactOpened" and first["items"][0]["actor"] == "agent:ana"
    seen = list(first["items"])
    url = first["next"]
    pages = 1
    while url:
        assert "after_version=" in url and "limit=5" in url
        page = (await api.client.get(url)).json()
        seen += page["items"]
        url = page["next"]
        pages += 1
    assert pages == 4 and [e["stream_version"] for e in seen] == list(range(1, 18))
    assert [e["previous_hash"] for e in seen[1:]] == [e["hash"] for e in seen[:-1]]
    tail = (await api.client.get("/v1/customers/cust-1/events", params={"after_version": 17})).json()
    assert tail["items"] == [] and tail["next"] is None


async def test_with_the_stored_bytes_a_client_recomputes_the_chain(api: Api) -> None:
    import base64
    from uuid import UUID

    from runtime.audit.chain import GENESIS_HASH, event_hash

    body = (await api.client.get("/v1/customers/cust-1/events", params={"stored": "true", "limit": 1000})).json()
    previous = GENESIS_HASH
    for item in body["items"]:
        assert item["previous_hash"] == previous
        assert item["hash"] == event_hash(
            previous_hash=previous,
            tenant_id=item["tenant_id"],
            stream=item["stream"],
            version=item["stream_version"],
            event_id=UUID(item["event_id"]),
            event_type=item["event_type"],
            schema_version=item["schema_version"],
            data=base64.b64decode(item["data_b64"]),
            metadata=base64.b64decode(item["metadata_b64"]),
        )
        previous = item["hash"]
    plain = (await api.client.get("/v1/customers/cust-1/events")).json()["items"][0]
    assert "data_b64" not in plain


async def test_events_validate_paging_and_tenant(api: Api) -> None:
    r = await api.client.get("/v1/customers/cust-1/events", params={"limit": 1001})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"
    r = await api.client.get("/v1/customers/cust-1/events", params={"after_version": -1})
    assert r.status_code == 422
    r = await api.client.get("/v1/customers/cust-1/events", headers={"X-Tenant-ID": "other"})
    assert r.status_code == 404 and r.json()["rule"] == "customer_not_found"


@pytest.mark.parametrize("path", ["events", "ownership", "state?as_of=2026-11-20T10:00:00Z", "verify", "timeline"])
async def test_an_unknown_customer_is_a_404_problem(api: Api, path: str) -> None:
    r = await api.client.get(f"/v1/customers/nobody/{path}")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["rule"] == "customer_not_found"


async def test_ownership_periods(api: Api) -> None:
    body = (await api.client.get("/v1/customers/cust-1/ownership")).json()
    periods = body["periods"]
    assert [(p["owner"], p["cause"]) for p in periods] == [
        ("ana", "first_contact"),
        ("ben", "handoff_accepted"),
        ("cleo", "handoff_accepted"),
    ]
    assert periods[0]["to"] == periods[1]["from"] == at(25).isoformat()
    assert periods[-1]["to"] is None and periods[1]["handoff_id"] == "ho1"
    events = (await api.client.get("/v1/customers/cust-1/events")).json()["items"]
    assert periods[1]["cause_event_id"] == events[7]["event_id"]


@pytest.mark.parametrize(("moment", "owner"), OWNERS_AT)
async def test_state_as_of(api: Api, moment: object, owner: str | None) -> None:
    r = await api.client.get("/v1/customers/cust-1/state", params={"as_of": moment.isoformat()})  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["owner"] or {}).get("agent_id") == owner
    if owner:
        assert body["cause_event"]["event_type"] == "OwnerAssigned"
    state = await load_state_as_of(api.store, TENANT, "cust-1", moment)  # type: ignore[arg-type]
    assert (state.owner.agent_id if state.owner else None) == owner


async def test_state_as_of_needs_a_valid_time(api: Api) -> None:
    r = await api.client.get("/v1/customers/cust-1/state", params={"as_of": "soon"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "as_of"
    r = await api.client.get("/v1/customers/cust-1/state")
    assert r.status_code == 422
    naive = await api.client.get("/v1/customers/cust-1/state", params={"as_of": "2026-11-20T09:30:00"})
    assert naive.json()["owner"]["agent_id"] == "ben"


async def test_verify_reports_ok_then_the_broken_event(api: Api) -> None:
    body = (await api.client.get("/v1/customers/cust-1/verify")).json()
    assert body["status"] == "ok" and body["events"] == 17 and body["broken"] is None
    head = body["head_hash"]
    assert (await api.client.get("/v1/customers/cust-1/verify", params={"expected_head": head})).json()[
        "status"
    ] == "ok"
    with sqlite3.connect(api.path) as conn:
        conn.execute("UPDATE events SET data = CAST('{}' AS BLOB) WHERE stream = 'customer:cust-1' AND version = 4")
    body = (await api.client.get("/v1/customers/cust-1/verify")).json()
    assert body["status"] == "broken"
    assert body["broken"]["kind"] == "changed" and body["broken"]["version"] == 4


async def test_the_timeline_page_is_self_contained_and_names_every_owner(api: Api) -> None:
    r = await api.client.get("/v1/customers/cust-1/timeline")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    for name in ("Ana Alves", "Ben Brennan", "Cleo Castillo"):
        assert name in page
    assert "chain verified" in page and "broken and escalated" in page
    assert page.count('class="band"') == 3 and 'data-category="note"' in page
    # Nothing is loaded from elsewhere: no src/href to any URL, no @import.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


async def test_the_timeline_page_escapes_what_users_wrote(api: Api) -> None:
    from contracts.events import NoteAdded
    from tests.audit.scenario import Step

    hostile = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'
    await write_scenario(
        api.store,
        TENANT,
        "cust-x",
        [
            *__import__("tests.audit.scenario", fromlist=["steps"]).steps()[:2],
            Step(3, "agent:ana", NoteAdded(contact_id="k1", note_id="n1", author_id="ana", text=hostile)),
        ],
    )
    page = (await api.client.get("/v1/customers/cust-x/timeline")).text
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;/script&gt;" in page
    assert set(AGENTS) >= {"ana"}
