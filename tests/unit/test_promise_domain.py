"""Promise decisions and the escalation ladder, pure."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from contracts.commands import AcknowledgeEscalation, CompleteCallback, PromiseCallback
from contracts.errors import RuleViolation
from contracts.events import EscalationRaised, OwnerAssigned, PromiseBroken, TeamTarget
from runtime.config import Settings
from runtime.domain.decisions import (
    decide_acknowledge_escalation,
    decide_complete_callback,
    decide_escalate_further,
    decide_promise_callback,
    decide_promise_due,
)
from runtime.domain.directory import Agent
from runtime.domain.time import parse_duration
from runtime.policy import load_policies
from tests.unit.test_ownership_properties import Customer

HOUR = timedelta(hours=1)


def promised(customer: Customer, due_in: timedelta = HOUR) -> str:
    customer.append(customer.decide(("open", "k1", "a1")))
    command = PromiseCallback(contact_id="k1", promised_by="a1", what="call back")
    customer.append(
        decide_promise_callback(
            customer.state, command, "p1", customer.now + due_in, customer.now, timedelta(days=30), customer.new_id
        )
    )
    return "p1"


def test_due_time_must_be_future_and_within_horizon() -> None:
    c = Customer()
    c.append(c.decide(("open", "k1", "a1")))
    command = PromiseCallback(contact_id="k1", promised_by="a1", what="x")
    for due, rule in ((c.now, "due_time_in_past"), (c.now + timedelta(days=31), "due_time_beyond_horizon")):
        with pytest.raises(RuleViolation) as err:
            decide_promise_callback(c.state, command, "p", due, c.now, timedelta(days=30), c.new_id)
        assert err.value.rule == rule


def test_unkept_promise_breaks_and_escalates_once_then_climbs() -> None:
    c = Customer()
    pid = promised(c)
    assert decide_promise_due(c.state, pid, c.now, "sup", c.new_id) == []  # not due yet
    c.now += HOUR
    decided = decide_promise_due(c.state, pid, c.now, "sup", c.new_id)
    assert [type(e) for _, e in decided] == [PromiseBroken, EscalationRaised]
    c.append(decided)
    assert decide_promise_due(c.state, pid, c.now, "sup", c.new_id) == []  # exactly once
    level2 = decide_escalate_further(c.state, "esc-p1-1", "mgr", c.new_id)
    assert [(e.level, e.to_agent_id) for _, e in level2] == [(2, "mgr")]  # type: ignore[attr-defined]
    c.append(level2)
    assert decide_escalate_further(c.state, "esc-p1-1", "mgr", c.new_id) == []
    c.append(decide_complete_callback(c.state, pid, CompleteCallback(agent_id="a1", outcome="done"), c.now, c.new_id))
    assert c.state.promises[pid].status == "kept_late"
    assert all(not e.open for e in c.state.escalations.values())  # kept late resolves them


def test_acknowledged_escalation_does_not_climb_and_only_supervisors_acknowledge() -> None:
    c = Customer()
    pid = promised(c)
    c.now += HOUR
    c.append(decide_promise_due(c.state, pid, c.now, "sup", c.new_id))
    ack = AcknowledgeEscalation(agent_id="a1")
    with pytest.raises(RuleViolation) as err:
        decide_acknowledge_escalation(c.state, "esc-p1-1", ack, Agent("a1", 1, available=True), c.new_id)
    assert err.value.kind == "forbidden"
    sup = Agent("sup", 1, role="supervisor", available=True)
    c.append(decide_acknowledge_escalation(c.state, "esc-p1-1", AcknowledgeEscalation(agent_id="sup"), sup, c.new_id))
    assert decide_escalate_further(c.state, "esc-p1-1", "mgr", c.new_id) == []


def test_open_promises_follow_the_new_owner() -> None:
    c = Customer()
    pid = promised(c)
    c.append(c.decide(("handoff", "a1", TeamTarget(team="billing"), True)))
    c.append(c.decide(("route",)))
    decided = c.decide(("accept", "offered"))
    owner_event = next(e for _, e in decided if isinstance(e, OwnerAssigned))
    assert owner_event.promises_transferred == [pid]
    c.append(decided)
    assert c.state.promises[pid].responsible_id == owner_event.agent_id != "a1"


def test_durations_and_policy_file(tmp_path: Path) -> None:
    assert parse_duration("PT1H30M") == timedelta(minutes=90) and parse_duration("P1W") == timedelta(days=7)
    for bad in ("", "P", "PT", "1H", "P1Y", "PT1X"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    policy = tmp_path / "policy.toml"
    policy.write_text('[default]\nreminder_lead = "PT5M"\n[tenants.acme]\npromise_max_horizon = "P2D"\n')
    policies = load_policies(Settings(policy_file=str(policy)))
    assert policies.for_tenant("other").reminder_lead == timedelta(minutes=5)
    assert policies.for_tenant("acme").promise_max_horizon == timedelta(days=2)
    assert policies.for_tenant("acme").reminder_lead == timedelta(minutes=5)
    policy.write_text('[default]\nreminder_led = "PT5M"\n')
    with pytest.raises(ValueError, match="unknown policy keys"):
        load_policies(Settings(policy_file=str(policy)))
