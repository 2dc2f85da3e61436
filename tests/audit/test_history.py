"""History queries over the scenario: ownership periods, state as of a moment, promise fates."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from contracts.events import CallbackCancelled, CallbackCompleted, CallbackPromised, PromiseBroken
from runtime.audit.history import (
    FATE_BROKEN,
    FATE_BROKEN_AND_ESCALATED,
    FATE_CANCELLED,
    FATE_KEPT,
    FATE_KEPT_LATE,
    FATE_OPEN,
    owner_as_of,
    ownership_periods,
    prefix_until,
    promise_fates,
    replay,
    state_as_of,
    timeline,
)
from runtime.domain.customer import CustomerState, evolve
from runtime.events import payload_of
from tests.audit.scenario import OWNERS_AT, Step, at, envelopes_of, steps


def test_the_timeline_lists_every_event_with_the_owner_after_it() -> None:
    envelopes = envelopes_of()
    entries = timeline(envelopes)
    assert [e.version for e in entries] == list(range(1, len(steps()) + 1))
    assert [e.event_type for e in entries][:2] == ["ContactOpened", "OwnerAssigned"]
    assert entries[0].owner_after is None
    assert [e.owner_after for e in entries][1:] == ["ana"] * 6 + ["ben"] * 6 + ["cleo"] * 4
    assert entries[2].category == "note" and "Charged twice" in entries[2].summary
    assert entries[3].promise_id == "p1" and entries[4].handoff_id == "ho1"
    assert entries[15].escalation_id == "e1" and entries[15].category == "escalation"
    assert entries[5].actor == "system:routing"


def test_ownership_periods_name_owner_dates_and_the_causing_event() -> None:
    envelopes = envelopes_of()
    periods = ownership_periods(envelopes)
    assert [(p.owner, p.since, p.until) for p in periods] == [
        ("ana", at(0), at(25)),
        ("ben", at(25), at(70)),
        ("cleo", at(70), None),
    ]
    by_version = {e.stream_version: e for e in envelopes}
    assert [p.cause_version for p in periods] == [2, 8, 14]
    assert [p.cause_event_id for p in periods] == [str(by_version[v].event_id) for v in (2, 8, 14)]
    assert [p.ended_by_event_id for p in periods] == [str(by_version[8].event_id), str(by_version[14].event_id), None]
    assert [p.cause for p in periods] == ["first_contact", "handoff_accepted", "handoff_accepted"]
    assert [p.previous_owner for p in periods] == [None, "ana", "ben"]
    assert [p.handoff_id for p in periods] == [None, "ho1", "ho2"]
    assert [p.handoff_reason for p in periods] == [None, "needs_expertise", "needs_authority"]
    assert periods[-1].current and not periods[0].current
    assert periods[1].covers(at(30)) and not periods[1].covers(at(70))


@pytest.mark.parametrize(("moment", "owner"), OWNERS_AT)
def test_the_owner_as_of_a_moment(moment: datetime, owner: str | None) -> None:
    envelopes = envelopes_of()
    result = owner_as_of(envelopes, moment)
    assert result.owner == owner
    periods = ownership_periods(envelopes)
    if owner is None:
        assert result.cause_event is None and result.since is None
        return
    (period,) = [p for p in periods if p.covers(moment)]
    assert result.since == period.since
    assert result.cause_event is not None
    assert result.cause_event.event_id == period.cause_event_id
    assert result.cause_event.event_type == "OwnerAssigned"
    assert state_as_of(envelopes, moment).owner == result.state.owner


def test_state_as_of_is_the_fold_of_the_prefix_with_evolve() -> None:
    envelopes = envelopes_of()
    moment = at(45)
    expected = CustomerState("cust-1")
    for envelope in envelopes:
        if envelope.occurred_at > moment:
            break
        expected = evolve(expected, envelope, payload_of(envelope))
    assert state_as_of(envelopes, moment) == expected
    assert [p.promise_id for p in expected.open_promises] == ["p2"]
    assert expected.promises["p1"].status == "kept"
    assert len(prefix_until(envelopes, moment)) == 10


def test_the_as_of_prefix_stops_at_the_first_later_event() -> None:
    # Events are folded in stream order: an event stamped earlier but recorded after a
    # later one is not folded before it (the state must be one that existed).
    envelopes = envelopes_of()
    skewed = [*envelopes[:3], envelopes[3].model_copy(update={"occurred_at": at(200)}), *envelopes[4:]]
    assert len(prefix_until(skewed, at(30))) == 3


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError):
        state_as_of(envelopes_of(), datetime(2026, 11, 20, 10))


def test_promise_fates() -> None:
    fates = {p.promise_id: p for p in promise_fates(envelopes_of())}
    assert fates["p1"].fate == FATE_KEPT and fates["p1"].label == "kept"
    assert fates["p1"].resolved_at == at(40) and fates["p1"].outcome == "Refund confirmed"
    assert fates["p1"].promised_by == "ana" and fates["p1"].responsible_id == "ben"
    p2 = fates["p2"]
    assert p2.fate == FATE_BROKEN_AND_ESCALATED and p2.label == "broken and escalated"
    assert p2.broken_at == at(90) and p2.responsible_id == "cleo"
    assert [(e.escalation_id, e.level, e.to_agent_id) for e in p2.escalations] == [("e1", 1, "sam")]


def test_every_fate_is_told_apart() -> None:
    scenario = [
        *steps()[:2],
        *(
            Step(
                1,
                "agent:ana",
                CallbackPromised(promise_id=p, contact_id="k1", promised_by="ana", due_at=at(5), what="x"),
            )
            for p in ("kept", "late", "cancelled", "open", "broken")
        ),
        Step(2, "agent:ana", CallbackCompleted(promise_id="kept", agent_id="ana", outcome="done")),
        Step(9, "agent:ana", CallbackCompleted(promise_id="late", agent_id="ana", outcome="done", late=True)),
        Step(3, "agent:ana", CallbackCancelled(promise_id="cancelled", agent_id="ana", reason="customer withdrew")),
        Step(6, "system:followup", PromiseBroken(promise_id="broken", due_at=at(5), owner_id="ana")),
    ]
    fates = {p.promise_id: p.fate for p in promise_fates(envelopes_of(scenario))}
    assert fates == {
        "kept": FATE_KEPT,
        "late": FATE_KEPT_LATE,
        "cancelled": FATE_CANCELLED,
        "open": FATE_OPEN,
        "broken": FATE_BROKEN,
    }


def test_replay_gathers_everything_and_lists_unknown_events_without_folding_them() -> None:
    envelopes = envelopes_of()
    unknown = envelopes[4].model_copy(update={"event_type": "FromTheFuture", "payload": {"x": 1}})
    history = replay([*envelopes[:4], unknown, *envelopes[5:]], "cust-1")
    assert history.customer_id == "cust-1" and history.undecodable == (5,)
    assert history.entries[4].summary.startswith("FromTheFuture v1 (unknown")
    assert [p.owner for p in history.periods] == ["ana", "ben", "cleo"]
    assert history.state.version == len(envelopes)
    assert replace(history.state) == history.state


def test_an_empty_history() -> None:
    history = replay([], "nobody")
    assert history.entries == () and history.periods == () and history.state == CustomerState("nobody")
    assert owner_as_of([], at(0), "nobody").owner is None
