"""What SREs rely on: one trace across services, Prometheus metrics, JSON logs, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.natsserver import NatsServer
from tests.e2e.test_handoffs import Api, team, uid
from tests.e2e.test_skeleton import all_events, store_of
from tests.support import System, eventually

pytestmark = [pytest.mark.slow, pytest.mark.nats]


def spans(path_pattern: Path) -> list[dict]:
    found = []
    for service in ("intake", "routing", "followup"):
        path = Path(str(path_pattern).replace("{service}", service))
        if path.exists():
            found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return found


def samples(text: str) -> dict[str, float]:
    """Prometheus exposition -> {'name{labels}': value}; raises if it does not parse."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


async def metrics(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{url}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return samples(r.text)


async def test_one_trace_across_three_services_and_metrics_move(tmp_path: Path, nats_server: NatsServer) -> None:
    trace_file = tmp_path / "spans-{service}.jsonl"
    system = System.create(tmp_path, nats_server.url, BATON_TRACE_FILE=str(trace_file))
    await system.start()
    try:
        before = {name: await metrics(system[name].url) for name in ("intake", "routing", "followup")}
        tenant, suffix, customer = uid("t"), uuid4().hex[:6], uid("cust")
        api = Api(system, tenant)
        ids = await team(api, suffix)
        await api.post(f"/v1/customers/{customer}/contacts", {"contact_id": "k1", "agent_id": ids["a"]})
        traceparent = f"00-{uuid4().hex}-{uuid4().hex[:16]}-01"
        trace_id = traceparent.split("-")[1]
        r = await api.client.post(
            f"/v1/customers/{customer}/handoffs",
            json={
                "from_agent_id": ids["a"],
                "target": {"kind": "team", "team": f"billing-{suffix}"},
                "reason": "needs_expertise",
                "recap": "Recap for the billing team",
                "customer_informed": True,
            },
            headers={"traceparent": traceparent},
        )
        assert r.status_code == 201, r.text
        await api.live_offer(customer, 1)

        async def one_trace() -> dict[str, list[str]]:
            by_service: dict[str, list[str]] = defaultdict(list)
            for s in spans(trace_file):
                if s["trace_id"] == trace_id:
                    by_service[s["service"]].append(s["name"])
            complete = len(by_service) == 3 and "consume HandoffOffered" in by_service.get("baton-followup", [])
            return by_service if complete else {}

        found = await eventually(one_trace, timeout=20, message="spans of all three services in one trace")
        assert any(name.startswith("POST /v1/customers/") for name in found["baton-intake"])
        assert "consume HandoffRequested" in found["baton-routing"]
        assert "consume HandoffOffered" in found["baton-followup"]  # caused by routing, same trace

        after = {name: await metrics(system[name].url) for name in ("intake", "routing", "followup")}
        key = "baton_commands_total{command=request_handoff,outcome=ok,service=intake}"
        assert after["intake"][key] == before["intake"].get(key, 0) + 1
        appended = "baton_events_appended_total{service=routing}"
        assert after["routing"][appended] > before["routing"].get(appended, 0)
        applied = "baton_consumer_messages_total{consumer=followup-followup,outcome=applied}"
        assert after["followup"][applied] > before["followup"].get(applied, 0)
        assert "baton_outbox_backlog{service=intake}" in after["intake"]
        assert "baton_consumer_lag{consumer=routing-ownership}" in after["routing"]
        assert "baton_promises_open{}" in after["followup"]
        # JSON logs with the trace id, tenant and customer
        log_lines = [
            json.loads(line) for line in system["routing"].log_path.read_text().splitlines() if line.startswith("{")
        ]
        assert log_lines and all({"time", "level", "message", "service"} <= set(entry) for entry in log_lines)
        offered = [e for e in log_lines if e["message"].startswith("recorded HandoffOffered")]
        assert offered and offered[0]["trace_id"] == trace_id
        assert offered[0]["tenant"] == tenant and offered[0]["customer"] == customer
        await api.client.aclose()
    finally:
        system.stop()


async def test_sigterm_under_load_exits_fast_and_loses_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    system = System.create(tmp_path, nats_server.url)
    await system.start()
    tenant = uid("t")
    accepted: list[str] = []
    try:
        client = httpx.AsyncClient(base_url=system["intake"].url, timeout=10, headers={"X-Tenant-ID": tenant})
        gate = asyncio.Semaphore(16)

        async def command(i: int) -> None:
            customer = f"load-{i}-{uuid4().hex[:6]}"
            async with gate:
                try:
                    r = await client.post(f"/v1/customers/{customer}/contacts", json={"agent_id": "alice"})
                except httpx.HTTPError:
                    return  # refused or cut off while stopping: not accepted
                if r.status_code == 201:
                    accepted.append(customer)

        load = [asyncio.create_task(command(i)) for i in range(500)]

        async def some_accepted() -> bool:
            return len(accepted) >= 100

        await eventually(some_accepted, timeout=60)
        started = time.monotonic()
        for name in ("intake", "routing", "followup"):
            assert system[name].process is not None
            system[name].process.send_signal(signal.SIGTERM)
        exits = {}
        for name in ("intake", "routing", "followup"):
            process = system[name].process
            assert process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, max(0.1, 15 - (time.monotonic() - started)))
            exits[name] = (process.poll(), time.monotonic() - started)
        await asyncio.gather(*load)
        await client.aclose()
        for name, (code, took) in exits.items():
            assert code is not None and took < 10, f"{name} took {took:.1f}s to exit (code {code})"

        await system.start()
        store = store_of(system)
        try:
            streams = {e.stream for e in await all_events(store) if e.tenant_id == tenant}
            assert {f"customer:{c}" for c in accepted} <= streams  # nothing accepted was lost

            async def consumed() -> bool:
                async with httpx.AsyncClient(base_url=system["routing"].url, headers={"X-Tenant-ID": tenant}) as c:
                    for customer in accepted:
                        r = await c.get(f"/v1/ownership/{customer}")
                        if r.status_code != 200 or r.json()["view_version"] != 2:
                            return False
                return True

            await eventually(consumed, timeout=60, message="every accepted command consumed after restart")
        finally:
            await store.close()
    finally:
        system.stop()
