"""Property-based: random command sequences on one customer keep the ownership rules.

After the first contact there is always exactly one owner; the owner changes only
through OwnerAssigned; a rejected command yields no events (so the stream is unchanged).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.commands import AcceptHandoff, AddNote, CloseLoop, DeclineHandoff, OpenContact, RequestHandoff
from contracts.envelope import EventEnvelope
from contracts.errors import RuleViolation
from contracts.events import AgentTarget, Event, HandoffReason, OwnerAssigned, SupervisorTarget, TeamTarget
from runtime.domain.customer import CustomerState, evolve
from runtime.domain.decisions import (
    RoutingFacts,
    decide_accept_handoff,
    decide_add_note,
    decide_close_loop,
    decide_decline_handoff,
    decide_expire_offer,
    decide_next_offer,
    decide_open_contact,
    decide_request_handoff,
    rank_candidates,
)
from runtime.domain.directory import Agent

AGENTS = ["a1", "a2", "a3", "sup"]
DIRECTORY = [
    Agent("a1", 1, "A1", teams=("billing",), supervisor_id="sup", available=True),
    Agent("a2", 1, "A2", teams=("billing",), supervisor_id="sup", available=True),
    Agent("a3", 1, "A3", teams=("tech",), supervisor_id="sup", available=True),
    Agent("sup", 1, "Sup", role="supervisor", available=True),
]
BY_ID = {a.agent_id: a for a in DIRECTORY}
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

agent = st.sampled_from(AGENTS)
contact = st.sampled_from(["k1", "k2"])
target = st.one_of(
    st.builds(AgentTarget, agent_id=agent),
    st.builds(TeamTarget, team=st.sampled_from(["billing", "tech", "nobody"])),
    st.just(SupervisorTarget()),
)
commands = st.one_of(
    st.tuples(st.just("open"), contact, agent),
    st.tuples(st.just("note"), contact, agent),
    st.tuples(st.just("handoff"), agent, target, st.booleans()),
    st.tuples(st.just("accept"), agent),
    st.tuples(st.just("accept"), st.just("offered")),
    st.tuples(st.just("decline"), st.just("offered")),
    st.tuples(st.just("decline"), agent),
    st.tuples(st.just("close"), contact, agent),
    st.tuples(st.just("route")),
    st.tuples(st.just("expire")),
    st.tuples(st.just("tick"), st.integers(min_value=1, max_value=400)),
)


class Customer:
    """A customer stream in memory, driven only through the pure decisions."""

    def __init__(self) -> None:
        self.state = CustomerState("cust")
        self.events: list[Event] = []
        self.now = T0
        self.ids = (UUID(int=i) for i in itertools.count(1))

    def new_id(self) -> UUID:
        return next(self.ids)

    def append(self, decided: list[tuple[UUID, Event]]) -> None:
        for event_id, event in decided:
            envelope = EventEnvelope(
                event_id=event_id,
                tenant_id="t",
                stream="customer:cust",
                customer_id="cust",
                stream_version=self.state.version + 1,
                event_type=event.event_type,
                schema_version=1,
                occurred_at=self.now,
                recorded_at=self.now,
                actor="agent:x",
                correlation_id=uuid4(),
                payload=event.model_dump(mode="json"),
            )
            self.state = evolve(self.state, envelope, event)
            self.events.append(event)

    def pending_id(self) -> str:
        pending = self.state.pending_handoff
        return pending.handoff_id if pending else "ho-none"

    def decide(self, command: tuple) -> list[tuple[UUID, Event]]:
        kind, *args = command
        s = self.state
        if args and args[0] == "offered":  # answer as the agent the live offer is for
            pending = s.pending_handoff
            offer = pending.live_offer if pending else None
            args = [offer.agent_id if offer else "a1"]
        if kind == "open":
            return decide_open_contact(s, OpenContact(agent_id=args[1]), args[0], self.new_id)
        if kind == "note":
            return decide_add_note(
                s, args[0], AddNote(author_id=args[1], text="note"), f"n{len(self.events)}", self.new_id
            )
        if kind == "handoff":
            command_ = RequestHandoff(
                from_agent_id=args[0],
                target=args[1],
                reason=HandoffReason.NOT_MY_AREA,
                recap="recap",
                customer_informed=args[2],
            )
            owner = BY_ID.get(s.owner.agent_id) if s.owner else None
            return decide_request_handoff(
                s,
                command_,
                f"ho{len(self.events)}",
                self.new_id,
                owner,
                BY_ID.get(args[0]),
                BY_ID.get(getattr(args[1], "agent_id", "")),
            )
        if kind == "accept":
            return decide_accept_handoff(s, self.pending_id(), AcceptHandoff(agent_id=args[0]), self.now, self.new_id)
        if kind == "decline":
            return decide_decline_handoff(
                s, self.pending_id(), DeclineHandoff(agent_id=args[0], reason="busy"), self.now, self.new_id
            )
        if kind == "close":
            return decide_close_loop(s, args[0], CloseLoop(agent_id=args[1], resolution="done"), self.new_id)
        if kind == "route":
            pending = s.pending_handoff
            if pending is None or s.owner is None:
                return []
            facts = RoutingFacts(
                self.now, timedelta(seconds=120), rank_candidates(pending, s.owner.agent_id, DIRECTORY, {}), "sup"
            )
            return decide_next_offer(s, pending.handoff_id, facts, self.new_id)
        if kind == "expire":
            pending = s.pending_handoff
            offer = pending.live_offer if pending else None
            if pending is None or offer is None:
                return []
            return decide_expire_offer(s, pending.handoff_id, offer.attempt, self.now, self.new_id)
        self.now += timedelta(seconds=args[0])
        return []


OPENING = [("open", "k1", "a1"), ("handoff", "a1", TeamTarget(team="billing"), True), ("route",)]


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(commands, min_size=1, max_size=40))
def test_exactly_one_owner_changed_only_by_owner_assigned(opened: bool, sequence: list[tuple]) -> None:
    """Half the runs start with a live offer, so accept/decline/expire paths are exercised."""
    customer = Customer()
    sequence = [*OPENING, *sequence] if opened else sequence
    for command in sequence:
        before_state, before_events = customer.state, list(customer.events)
        try:
            decided = customer.decide(command)
        except RuleViolation as violation:
            assert violation.kind in {"not_found", "forbidden", "conflict", "invalid"}
            assert customer.state is before_state and customer.events == before_events
            continue
        previous_owner = customer.state.owner.agent_id if customer.state.owner else None
        customer.append(decided)
        owner_events = [e for _, e in decided if isinstance(e, OwnerAssigned)]
        current_owner = customer.state.owner.agent_id if customer.state.owner else None
        if current_owner != previous_owner:
            assert owner_events, f"owner changed without OwnerAssigned: {command}"
            assert owner_events[-1].agent_id == current_owner
        if owner_events and previous_owner is not None:
            assert owner_events[-1].previous_agent_id == previous_owner
        if customer.state.contacts:
            assert customer.state.owner is not None  # exactly one owner after the first contact
        assert sum(1 for h in customer.state.handoffs.values() if h.status in {"pending", "offered"}) <= 1


def test_a_handoff_changes_owner_only_when_the_offered_agent_accepts() -> None:
    c = Customer()
    c.append(c.decide(("open", "k1", "a1")))
    c.append(c.decide(("handoff", "a1", TeamTarget(team="billing"), True)))
    c.append(c.decide(("route",)))
    offer = c.state.pending_handoff.live_offer  # type: ignore[union-attr]
    assert offer is not None and offer.agent_id == "a2" and c.state.owner.agent_id == "a1"  # type: ignore[union-attr]
    try:
        c.decide(("accept", "a3"))
        raise AssertionError("another agent accepted")
    except RuleViolation as err:
        assert err.kind == "forbidden"
    c.append(c.decide(("accept", "a2")))
    assert c.state.owner.agent_id == "a2"  # type: ignore[union-attr]
    try:
        c.decide(("accept", "a2"))
        raise AssertionError("accepted twice")
    except RuleViolation as err:
        assert err.rule in {"handoff_not_found", "handoff_already_accepted"}
