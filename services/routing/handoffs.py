"""routing's work: offer pending hand-offs, re-offer on decline or expiry, fail and
escalate when nobody is left. Offer expiry is a durable deadline."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from uuid import UUID

from contracts.envelope import EventEnvelope
from contracts.events import (
    Event,
    ExternalTarget,
    HandoffAccepted,
    HandoffDeclined,
    HandoffFailed,
    HandoffOffered,
    HandoffRequested,
)
from runtime.commanding import Decide, derived_ids, execute_for_customer, load_directory, system_context
from runtime.compose import ServiceRuntime
from runtime.domain.customer import CustomerState
from runtime.domain.decisions import Decided, RoutingFacts, decide_expire_offer, decide_next_offer, rank_candidates
from runtime.domain.projections import OwnershipProjection
from runtime.store.port import Deadline, DeadlineStore, RecordedEvent

log = logging.getLogger(__name__)

OFFER_TIMER = "routing-offer-expiry"
ACTOR = "system:routing"


class HandoffRouter:
    """Reacts to hand-off events and fires expired offers."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        deadlines: DeadlineStore,
        offer_ttl: timedelta,
        after_append: Callable[[Sequence[RecordedEvent]], Awaitable[None]],
        timer_interval: float = 0.2,
    ) -> None:
        self._runtime = runtime
        self._deadlines = deadlines
        self._offer_ttl = offer_ttl
        self._after_append = after_append
        self._interval = timer_interval
        self.expired_total = 0

    async def react(self, envelope: EventEnvelope, event: Event) -> None:
        """The reactor of routing's ownership consumer (idempotent)."""
        customer_id = envelope.customer_id
        if customer_id is None:
            return
        tenant = envelope.tenant_id
        if isinstance(event, HandoffRequested) and not isinstance(event.target, ExternalTarget):
            await self.offer_next(tenant, customer_id, event.handoff_id, envelope)
        elif isinstance(event, HandoffDeclined):
            await self._deadlines.cancel(OFFER_TIMER, tenant, self._key(customer_id, event.handoff_id))
            await self.offer_next(tenant, customer_id, event.handoff_id, envelope)
        elif isinstance(event, HandoffOffered):
            await self._deadlines.schedule(
                Deadline(
                    OFFER_TIMER,
                    tenant,
                    self._key(customer_id, event.handoff_id),
                    event.expires_at,
                    {"customer_id": customer_id, "handoff_id": event.handoff_id, "attempt": event.attempt},
                )
            )
        elif isinstance(event, HandoffAccepted | HandoffFailed):
            await self._deadlines.cancel(OFFER_TIMER, tenant, self._key(customer_id, event.handoff_id))

    @staticmethod
    def _key(customer_id: str, handoff_id: str) -> str:
        return f"{customer_id}/{handoff_id}"

    async def _run(
        self, tenant: str, customer_id: str, seed: str, cause: EventEnvelope | None, decide: Decide[CustomerState]
    ) -> None:
        context = system_context(ACTOR, self._runtime.clock(), seed, cause)
        outcome = await execute_for_customer(
            self._runtime.store,
            tenant,
            customer_id,
            decide,
            context=context,
            retries=self._runtime.settings.command_retries,
            after_append=self._after_append,
        )
        for record in outcome.recorded:
            log.info("recorded %s v%d for %s", record.event_type, record.version, customer_id)

    async def offer_next(self, tenant: str, customer_id: str, handoff_id: str, cause: EventEnvelope) -> None:
        """Offer the hand-off to the best candidate not yet asked, or fail it."""
        store = self._runtime.store
        directory = await load_directory(store, tenant)
        agents = list(directory.agents.values())
        workload = {
            a.agent_id: len(await self._runtime.views.find(OwnershipProjection.view, tenant, "owner_id", a.agent_id))
            for a in agents
            if a.available  # only available agents can be offered anything
        }
        now = self._runtime.clock()

        def decide(state: CustomerState) -> list[tuple[UUID, Event]]:
            handoff = state.handoffs.get(handoff_id)
            if handoff is None or state.owner is None:
                return []
            requester = directory.get(handoff.from_agent_id)
            facts = RoutingFacts(
                now=now,
                offer_ttl=self._offer_ttl,
                candidates=rank_candidates(handoff, state.owner.agent_id, agents, workload),
                escalate_to=requester.supervisor_id if requester else None,
            )
            return decide_next_offer(state, handoff_id, facts, derived_ids(f"{tenant}/{cause.event_id}/offer"))

        await self._run(tenant, customer_id, str(cause.event_id), cause, decide)

    async def fire_due(self) -> int:
        """Expire every offer whose deadline has passed. Returns how many deadlines fired."""
        now = self._runtime.clock()
        fired = 0
        for deadline in await self._deadlines.due(OFFER_TIMER, now, limit=200):
            customer_id = str(deadline.data["customer_id"])
            handoff_id = str(deadline.data["handoff_id"])
            attempt = int(deadline.data["attempt"])
            seed = f"{deadline.tenant_id}/{customer_id}/{handoff_id}/{attempt}/expired"

            def decide(state: CustomerState, h: str = handoff_id, a: int = attempt, sd: str = seed) -> Decided:
                return decide_expire_offer(state, h, a, now, derived_ids(sd))

            await self._run(deadline.tenant_id, customer_id, seed, None, decide)
            await self._deadlines.cancel(OFFER_TIMER, deadline.tenant_id, deadline.key, due_at=deadline.due_at)
            fired += 1
        self.expired_total += fired
        return fired

    async def run_timer(self, stop: asyncio.Event) -> None:
        """Fire due offers until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.fire_due()
            except Exception as exc:
                log.warning("offer expiry check failed, retrying: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
