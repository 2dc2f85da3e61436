"""followup's work: every promise ends kept, kept late, cancelled, or broken and escalated.

Deadlines are durable (the deadline store) and fired idempotently (event ids derived
from the deadline), so restarts, redeliveries and several replicas raise each level of
each promise exactly once. Reminders and escalations are also sent to the CRM.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from contracts.envelope import EventEnvelope
from contracts.events import (
    CallbackCancelled,
    CallbackCompleted,
    CallbackPromised,
    EscalationAcknowledged,
    EscalationRaised,
    Event,
    HandoffFailed,
    HandoffOffered,
)
from runtime.commanding import Decide, derived_ids, execute_for_customer, load_customer, load_directory, system_context
from runtime.compose import ServiceRuntime
from runtime.domain.customer import PROMISE_OPEN, CustomerState
from runtime.domain.decisions import decide_escalate_further, decide_promise_due
from runtime.domain.directory import Directory
from runtime.domain.time import due_after
from runtime.policy import Policies
from runtime.store.port import Deadline, DeadlineStore, RecordedEvent
from runtime.telemetry import Family, counter, gauge

log = logging.getLogger(__name__)

PROMISE_TIMER = "followup-promises"
"""Due times of open promises: how many are pending is the number of open promises."""
REMINDER_TIMER = "followup-reminders"
ESCALATION_TIMER = "followup-escalations"
ACTOR = "system:followup"
REMINDER, DUE, ESCALATE = "reminder", "due", "escalate"
TIMER_OF = {REMINDER: REMINDER_TIMER, DUE: PROMISE_TIMER, ESCALATE: ESCALATION_TIMER}
FIRE_CONCURRENCY = 16


class Notify(Protocol):
    """Sends a notification to the tenant's CRM (idempotent by notification id)."""

    async def notify(self, tenant_id: str, notification_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Queue the notification; never blocks on the CRM."""
        ...


class PromiseLadder:
    """Schedules and fires promise deadlines; raises and climbs escalations."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        deadlines: DeadlineStore,
        policies: Policies,
        notifier: Notify,
        after_append: Callable[[Sequence[RecordedEvent]], Awaitable[None]],
        timer_interval: float = 0.2,
    ) -> None:
        self._runtime = runtime
        self._deadlines = deadlines
        self._policies = policies
        self._notifier = notifier
        self._after_append = after_append
        self._interval = timer_interval
        self.fired_total = 0
        self.escalations_by_level: dict[int, int] = {}

    @staticmethod
    def key(customer_id: str, subject_id: str, step: str) -> str:
        """The deadline key of one step of one promise (or escalation)."""
        return f"{customer_id}/{subject_id}/{step}"

    async def _schedule(self, tenant: str, customer_id: str, subject_id: str, step: str, at: datetime) -> None:
        data = {"customer_id": customer_id, "subject_id": subject_id, "step": step}
        await self._deadlines.schedule(
            Deadline(TIMER_OF[step], tenant, self.key(customer_id, subject_id, step), at, data)
        )

    async def react(self, envelope: EventEnvelope, event: Event) -> None:
        """The reactor of followup's consumer (idempotent: upserts and deduplicated sends)."""
        customer_id = envelope.customer_id
        if customer_id is None:
            return
        tenant = envelope.tenant_id
        policy = self._policies.for_tenant(tenant)
        if isinstance(event, CallbackPromised):
            reminder_at = due_after(event.due_at, -policy.reminder_lead)
            if reminder_at > envelope.occurred_at:
                await self._schedule(tenant, customer_id, event.promise_id, REMINDER, reminder_at)
            await self._schedule(tenant, customer_id, event.promise_id, DUE, event.due_at)
        elif isinstance(event, CallbackCompleted | CallbackCancelled):
            for step in (REMINDER, DUE):
                await self._deadlines.cancel(TIMER_OF[step], tenant, self.key(customer_id, event.promise_id, step))
            state = await self._state(tenant, customer_id)
            promise = state.promises.get(event.promise_id)
            for escalation_id in promise.escalation_ids if promise else ():
                await self._deadlines.cancel(ESCALATION_TIMER, tenant, self.key(customer_id, escalation_id, ESCALATE))
        elif isinstance(event, EscalationRaised):
            payload = {
                "customer_id": customer_id,
                "escalation_id": event.escalation_id,
                "level": event.level,
                "to_agent_id": event.to_agent_id,
                "reason": event.reason,
                "promise_id": event.promise_id,
                "handoff_id": event.handoff_id,
            }
            await self._notifier.notify(tenant, f"escalation-{event.escalation_id}", "escalation.raised", payload)
            if event.promise_id is not None and event.level == 1:
                at = due_after(envelope.occurred_at, policy.escalation_level2_after)
                await self._schedule(tenant, customer_id, event.escalation_id, ESCALATE, at)
        elif isinstance(event, EscalationAcknowledged):
            await self._deadlines.cancel(ESCALATION_TIMER, tenant, self.key(customer_id, event.escalation_id, ESCALATE))
        elif isinstance(event, HandoffOffered):
            payload = {
                "customer_id": customer_id,
                "handoff_id": event.handoff_id,
                "agent_id": event.agent_id,
                "attempt": event.attempt,
                "expires_at": event.expires_at.isoformat(),
            }
            await self._notifier.notify(tenant, f"offer-{envelope.event_id}", "handoff.offered", payload)
        elif isinstance(event, HandoffFailed):
            payload = {"customer_id": customer_id, "handoff_id": event.handoff_id, "reason": event.reason}
            await self._notifier.notify(tenant, f"handoff-failed-{envelope.event_id}", "handoff.failed", payload)

    async def _state(self, tenant: str, customer_id: str) -> CustomerState:
        return await load_customer(self._runtime.store, tenant, customer_id)

    async def _directory(self, tenant: str, cache: dict[str, Directory] | None = None) -> Directory:
        """The tenant's directory, read once per batch of due deadlines when ``cache`` is given."""
        if cache is not None and tenant in cache:
            return cache[tenant]
        directory = await load_directory(self._runtime.store, tenant)
        if cache is not None:
            cache[tenant] = directory
        return directory

    async def _record(self, tenant: str, customer_id: str, seed: str, decide: Decide[CustomerState]) -> None:
        outcome = await execute_for_customer(
            self._runtime.store,
            tenant,
            customer_id,
            decide,
            context=system_context(ACTOR, self._runtime.clock(), seed),
            retries=self._runtime.settings.command_retries,
            after_append=self._after_append,
        )
        for record in outcome.recorded:
            if record.event_type == EscalationRaised.event_type:
                level = int(json.loads(record.data)["level"])
                self.escalations_by_level[level] = self.escalations_by_level.get(level, 0) + 1

    async def fire(self, deadline: Deadline, now: datetime, directories: dict[str, Directory] | None = None) -> None:
        """Carry out one due step (idempotent), then forget the deadline.

        ``directories`` caches tenants' directories across one batch of due deadlines.
        """
        tenant = deadline.tenant_id
        customer_id = str(deadline.data["customer_id"])
        subject_id = str(deadline.data["subject_id"])
        step = str(deadline.data["step"])
        seed = f"{tenant}/{customer_id}/{subject_id}/{step}"
        if step == REMINDER:
            promise = (await self._state(tenant, customer_id)).promises.get(subject_id)
            if promise is not None and promise.status == PROMISE_OPEN:
                payload = {
                    "customer_id": customer_id,
                    "promise_id": subject_id,
                    "to_agent_id": promise.responsible_id,
                    "due_at": promise.due_at.isoformat(),
                    "what": promise.what,
                }
                await self._notifier.notify(tenant, f"reminder-{seed}", "promise.reminder", payload)
        elif step == DUE:
            directory = await self._directory(tenant, directories)

            def decide_due(state: CustomerState) -> Any:
                promise = state.promises.get(subject_id)
                owner = directory.get(promise.responsible_id) if promise else None
                return decide_promise_due(
                    state, subject_id, now, owner.supervisor_id if owner else None, derived_ids(seed)
                )

            await self._record(tenant, customer_id, seed, decide_due)
        elif step == ESCALATE:
            directory = await self._directory(tenant, directories)

            def decide_climb(state: CustomerState) -> Any:
                escalation = state.escalations.get(subject_id)
                supervisor = directory.get(escalation.to_agent_id) if escalation else None
                manager = supervisor.supervisor_id if supervisor else None
                return decide_escalate_further(state, subject_id, manager, derived_ids(seed))

            await self._record(tenant, customer_id, seed, decide_climb)
        await self._deadlines.cancel(deadline.timer, tenant, deadline.key, due_at=deadline.due_at)

    async def fire_due(self, limit: int = 500) -> int:
        """Fire every due step (a bounded batch). Returns how many fired."""
        now = self._runtime.clock()
        due: list[Deadline] = []
        for timer in (PROMISE_TIMER, ESCALATION_TIMER, REMINDER_TIMER):
            due += await self._deadlines.due(timer, now, limit=limit)
        if not due:
            return 0
        gate = asyncio.Semaphore(FIRE_CONCURRENCY)
        directories: dict[str, Directory] = {}

        async def fire_one(deadline: Deadline) -> bool:
            async with gate:
                try:
                    await self.fire(deadline, now, directories)
                    return True
                except Exception as exc:  # retried at the next tick: the deadline stays
                    log.warning("deadline %s failed, will retry: %r", deadline.key, exc)
                    return False

        fired = sum(await asyncio.gather(*(fire_one(d) for d in due)))
        self.fired_total += fired
        return fired

    async def run_timer(self, stop: asyncio.Event) -> None:
        """Fire due deadlines until ``stop`` is set."""
        while not stop.is_set():
            try:
                while await self.fire_due() and not stop.is_set():
                    pass
            except Exception as exc:
                log.warning("promise deadline check failed, retrying: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def scrape(self) -> list[Family]:
        """Metrics: open and overdue promises, escalations by level (this process)."""
        now = self._runtime.clock()
        open_promises = await self._deadlines.count(PROMISE_TIMER)
        overdue = len(await self._deadlines.due(PROMISE_TIMER, now, limit=10_000))
        levels: dict[tuple[str, ...], float] = {
            (str(level),): float(count) for level, count in self.escalations_by_level.items()
        }
        return [
            gauge("baton_promises_open", "Promises waiting for their due time.", {}, open_promises),
            gauge(
                "baton_promises_overdue", "Promises past their due time not yet escalated (ladder lag).", {}, overdue
            ),
            counter("baton_escalations", "Escalations raised by this process, by level.", levels, ["level"]),
        ]
