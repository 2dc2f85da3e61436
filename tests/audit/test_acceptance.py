"""Issue 5's acceptance, end to end: real NATS and the three services as processes.

One scenario through the intake API: three owners (first contact, then two accepted
hand-offs to named colleagues), two promises (one kept, one broken and escalated by
followup). Then, with the services stopped:

- ``baton audit`` shows all of it, and ``--as-of`` at five moments names the right owner;
- the timeline page renders in headless Chromium without console errors and shows every
  owner's name;
- ``baton rebuild`` rebuilds every service view, equal to what the live consumers built.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from runtime.cli.main import app as cli
from runtime.natsserver import NatsServer, free_port
from runtime.store.port import RecordedEvent
from tests.audit.browser import INSTALL_HINT, chromium, render, serve
from tests.e2e.test_handoffs import Api, uid
from tests.e2e.test_skeleton import store_of
from tests.support import System, eventually

pytestmark = [pytest.mark.slow, pytest.mark.nats]

# (service, view) pairs whose documents a rebuild must reproduce.
SERVICE_VIEWS = [
    ("intake", "ownership"),
    ("routing", "ownership"),
    ("routing", "directory"),
    ("followup", "followup"),
    ("followup", "directory"),
]


@dataclass
class Scenario:
    system: System
    tenant: str
    customer: str
    agents: dict[str, str]  # role -> agent id
    names: dict[str, str]  # agent id -> name
    events: list[RecordedEvent]
    views_before: dict[tuple[str, str], dict[tuple[str, str], tuple[int, str]]]

    def env(self) -> dict[str, str]:
        return {**self.system.env, "BATON_DEFAULT_TENANT": self.tenant, "COLUMNS": "200"}

    def owner_assigned(self) -> list[RecordedEvent]:
        return [e for e in self.events if e.event_type == "OwnerAssigned"]


def views_of(system: System, service: str, view: str) -> dict[tuple[str, str], tuple[int, str]]:
    path = system.data_dir / f"baton-{service}-views.db"
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT tenant_id, key, version, doc FROM views WHERE view = ?", (view,)).fetchall()
    return {(t, k): (v, d) for t, k, v, d in rows}


async def stream_versions(system: System, tenant: str) -> dict[str, int]:
    store = store_of(system)
    try:
        versions: dict[str, int] = {}
        after = 0
        while batch := await store.read_all(after_position=after):
            for record in batch:
                if record.tenant_id == tenant:
                    versions[record.stream] = record.version
            after = batch[-1].position
        return versions
    finally:
        await store.close()


async def caught_up(system: System, tenant: str) -> bool:
    versions = await stream_versions(system, tenant)
    for service, view in SERVICE_VIEWS:
        docs = views_of(system, service, view)
        wanted = {s: v for s, v in versions.items() if (s == "directory") == (view == "directory")}
        if {s: docs.get((tenant, s), (0, ""))[0] for s in wanted} != wanted:
            return False
    return True


async def run_scenario(system: System) -> Scenario:
    await system.start()
    tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
    agents = {"sup": f"sup-{suffix}", "a": f"ana-{suffix}", "b": f"ben-{suffix}", "c": f"cleo-{suffix}"}
    names = {
        agents["sup"]: "Sam Okafor",
        agents["a"]: "Ana Alves",
        agents["b"]: "Ben Brennan",
        agents["c"]: "Cleo Castillo",
    }
    api = Api(system, tenant)
    try:
        await api.agent(agents["sup"], name=names[agents["sup"]], role="supervisor")
        for key in ("a", "b", "c"):
            await api.agent(agents[key], name=names[agents[key]], supervisor_id=agents["sup"])

        async def ok(path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
            r = await api.post(f"/v1/customers/{customer}{path}", body)
            assert r.status_code == status, r.text
            return dict(r.json())

        async def hand_off(frm: str, to: str) -> None:
            body = await ok(
                "/handoffs",
                {
                    "from_agent_id": frm,
                    "target": {"kind": "agent", "agent_id": to},
                    "reason": "needs_authority",
                    "recap": "Double charge on the November invoice; refund agreed, credit note pending.",
                    "customer_informed": True,
                },
            )
            offer = await api.live_offer(customer, 1)
            assert offer["agent_id"] == to
            await ok(f"/handoffs/{body['handoff_id']}/accept", {"agent_id": to}, 200)

        await ok("/contacts", {"contact_id": "k1", "agent_id": agents["a"], "subject": "Double charge"})
        await ok("/contacts/k1/notes", {"author_id": agents["a"], "text": "Charged twice on 3 Nov"})
        kept = (
            await ok("/promises", {"contact_id": "k1", "promised_by": agents["a"], "what": "Confirm", "within": "PT1H"})
        )["promise_id"]
        await hand_off(agents["a"], agents["b"])
        await ok(f"/promises/{kept}/complete", {"agent_id": agents["b"], "outcome": "Refund confirmed"}, 200)
        await hand_off(agents["b"], agents["c"])
        await ok("/contacts/k1/notes", {"author_id": agents["c"], "text": "Credit note needs sign-off"})
        await ok("/promises", {"contact_id": "k1", "promised_by": agents["c"], "what": "Credit note", "within": "PT2S"})

        async def escalated() -> list[RecordedEvent]:
            store = store_of(system)
            try:
                events = await store.read_stream(tenant, f"customer:{customer}")
            finally:
                await store.close()
            return events if any(e.event_type == "EscalationRaised" for e in events) else []

        await eventually(escalated, timeout=30, message="the broken promise escalated")
        await eventually(lambda: caught_up(system, tenant), timeout=30, message="every view caught up")
    finally:
        await api.client.aclose()
        system.stop()
    assert await caught_up(system, tenant), "an event landed after the views caught up"
    store = store_of(system)
    try:
        events = await store.read_stream(tenant, f"customer:{customer}")
    finally:
        await store.close()
    before = {(s, v): views_of(system, s, v) for s, v in SERVICE_VIEWS}
    return Scenario(system, tenant, customer, agents, names, events, before)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, nats_server: NatsServer) -> Iterator[Scenario]:
    system = System.create(tmp_path_factory.mktemp("acceptance"), nats_server.url)
    try:
        yield asyncio.run(run_scenario(system))
    finally:
        system.stop()


def baton(scenario: Scenario, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=scenario.env(), input=input)


def test_the_scenario_recorded_three_owners_two_promises_and_an_escalation(scenario: Scenario) -> None:
    types = [e.event_type for e in scenario.events]
    assert types.count("OwnerAssigned") == 3 and types.count("HandoffAccepted") == 2
    assert types.count("CallbackPromised") == 2 and types.count("CallbackCompleted") == 1
    assert types.count("PromiseBroken") == 1 and types.count("EscalationRaised") == 1


def test_baton_audit_shows_all_of_it(scenario: Scenario) -> None:
    a, b, c, sup = (scenario.agents[k] for k in ("a", "b", "c", "sup"))
    result = baton(scenario, "audit", scenario.customer, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["chain"]["status"] == "ok" and doc["chain"]["events"] == len(scenario.events)
    assert [p["owner"] for p in doc["ownership"]] == [a, b, c]
    assert [p["cause"] for p in doc["ownership"]] == ["first_contact", "handoff_accepted", "handoff_accepted"]
    assigned = scenario.owner_assigned()
    assert [p["cause_event_id"] for p in doc["ownership"]] == [str(e.event_id) for e in assigned]
    fates = sorted((p["promised_by"], p["fate"]) for p in doc["promises"])
    assert fates == sorted([(a, "kept"), (c, "broken_and_escalated")])
    broken = next(p for p in doc["promises"] if p["fate"] == "broken_and_escalated")
    assert [(e["level"], e["to_agent_id"]) for e in broken["escalations"]] == [(1, sup)]
    assert [e["event_type"] for e in doc["timeline"]] == [e.event_type for e in scenario.events]
    assert doc["timeline"][-1]["owner_after"] == c

    table = baton(scenario, "audit", scenario.customer)
    assert table.exit_code == 0, table.output
    for name in scenario.names.values():
        assert name in table.stdout
    assert "kept" in table.stdout and "broken and escalated" in table.stdout and "chain ok" in table.stdout


def test_as_of_at_five_moments_names_the_right_owner(scenario: Scenario) -> None:
    a, b, c = (scenario.agents[k] for k in ("a", "b", "c"))
    first, second, third = (
        datetime.fromisoformat(json.loads(e.metadata)["occurred_at"]) for e in scenario.owner_assigned()
    )
    tick = timedelta(microseconds=1)
    moments = [
        (first - timedelta(seconds=5), None),  # before the first contact
        (first, a),  # the moment Ana became owner
        (first + (second - first) / 2, a),  # while the first hand-off was pending
        (second, b),
        (second + (third - second) / 2, b),
        (third - tick, b),  # a microsecond before Cleo accepted
        (third + timedelta(hours=1), c),
    ]
    for moment, owner in moments:
        result = baton(scenario, "audit", scenario.customer, "--as-of", moment.isoformat(), "--format", "json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert (doc["owner"] or {}).get("agent_id") == owner, moment
        if owner:
            assert doc["owner"]["name"] == scenario.names[owner]
            assert doc["cause_event"]["event_type"] == "OwnerAssigned"


def test_verify_passes_and_exports_a_bundle_that_verifies(scenario: Scenario, tmp_path: Path) -> None:
    assert baton(scenario, "verify", scenario.customer).exit_code == 0
    assert baton(scenario, "verify", "--all").exit_code == 0
    exported = baton(scenario, "export", scenario.customer)
    assert exported.exit_code == 0
    bundle = tmp_path / "bundle.jsonl"
    bundle.write_text(exported.stdout)
    assert baton(scenario, "verify", "--bundle", str(bundle)).exit_code == 0


def audit_app(scenario: Scenario, views: Path) -> FastAPI:
    from runtime.compose import build_runtime
    from runtime.config import Settings
    from runtime.store.sqlite import SqliteViewStore
    from runtime.web import install_problem_handlers
    from services.intake.audit_routes import add_audit_routes

    settings = Settings(store_url=scenario.system.store_url, default_tenant=scenario.tenant)
    runtime = build_runtime("intake", settings, store=store_of(scenario.system), views=SqliteViewStore(views))
    app = FastAPI()
    install_problem_handlers(app)
    add_audit_routes(app, runtime)
    return app


@pytest.mark.skipif(chromium() is None, reason=INSTALL_HINT)
def test_the_timeline_page_renders_in_chromium_with_every_owner(scenario: Scenario, tmp_path: Path) -> None:
    with serve(audit_app(scenario, tmp_path / "views.db"), free_port()) as url:
        page = render(f"{url}/v1/customers/{scenario.customer}/timeline", tmp_path / "profile")
    assert page.console == [], page.console
    assert page.body_attribute("data-js-errors") == "0"
    assert page.body_attribute("data-rendered") == "yes"
    for role in ("a", "b", "c"):
        assert scenario.names[scenario.agents[role]] in page.dom
    assert "chain verified" in page.dom and "broken and escalated" in page.dom


def test_rebuilt_views_equal_the_live_ones(scenario: Scenario) -> None:
    for key, docs in scenario.views_before.items():
        assert docs, f"{key}: the live consumers built nothing"
    result = baton(scenario, "rebuild", "--yes", "--format", "json")
    assert result.exit_code == 0, result.output
    rebuilt = json.loads(result.stdout)
    assert [(r["service"], r["view"]) for r in rebuilt] == SERVICE_VIEWS
    for service, view in SERVICE_VIEWS:
        before = scenario.views_before[(service, view)]
        after = views_of(scenario.system, service, view)
        assert after == before, f"{service}/{view} differs after the rebuild"
