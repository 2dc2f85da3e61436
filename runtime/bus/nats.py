"""FastStream/NATS glue: the broker, JetStream publishing of stored events, and durable
pull consumers with explicit acknowledgement.

FastStream's default NATS acknowledgement policy terminates a message whose handler
raised, so JetStream never redelivers it. Every subscriber here uses
``AckPolicy.MANUAL`` and acknowledges according to ``ProjectionConsumer``'s outcome:
ack when applied or skipped, nak with a delay to retry, ack once parked.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.errors import NotJSMessageError
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from runtime.bus.consumer import Outcome, ProjectionConsumer
from runtime.bus.jetstream import ensure_stream
from runtime.bus.subjects import (
    MSG_ID_HEADER,
    STREAM_HEADER,
    TENANT_HEADER,
    TYPE_HEADER,
    VERSION_HEADER,
    all_events,
    event_subject,
)
from runtime.config import Settings
from runtime.events import to_envelope
from runtime.store.port import RecordedEvent

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 5.0


def make_broker(settings: Settings, name: str) -> NatsBroker:
    """A broker connected to the configured NATS servers; reconnects forever."""
    return NatsBroker(
        servers=[s.strip() for s in settings.nats_url.split(",") if s.strip()],
        name=f"baton-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=logging.getLogger(f"baton.{name}.bus"),
        log_level=logging.DEBUG,
    )


async def declare(broker: NatsBroker, settings: Settings) -> None:
    """Declare the events stream (idempotent). Call after ``broker.connect()``."""
    await ensure_stream(
        broker.connection.jetstream(), settings.nats_stream, settings.subject_prefix, settings.nats_stream_replicas
    )


class JetStreamPublisher:
    """Publishes one stored event, waiting for JetStream's acknowledgement."""

    def __init__(self, broker: NatsBroker, settings: Settings) -> None:
        self._broker = broker
        self._stream = settings.nats_stream
        self._prefix = settings.subject_prefix

    async def __call__(self, record: RecordedEvent) -> None:
        envelope = to_envelope(record)
        headers = {
            MSG_ID_HEADER: str(record.event_id),
            TENANT_HEADER: record.tenant_id,
            STREAM_HEADER: record.stream,
            VERSION_HEADER: str(record.version),
            TYPE_HEADER: record.event_type,
            "content-type": "application/json",
        }
        if envelope.trace_context.traceparent:
            headers["traceparent"] = envelope.trace_context.traceparent
        await self._broker.publish(
            envelope.model_dump_json().encode(),
            subject=event_subject(self._prefix, record.tenant_id, record.event_type),
            headers=headers,
            stream=self._stream,
            timeout=PUBLISH_TIMEOUT_SECONDS,
        )


def consumer_config(consumer: ProjectionConsumer, settings: Settings) -> ConsumerConfig:
    """A durable pull consumer over every event: explicit acks, unlimited deliveries
    (parking is decided by the consumer, so JetStream never gives up on its own)."""
    return ConsumerConfig(
        durable_name=consumer.name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=settings.consumer_ack_wait_seconds,
        max_deliver=-1,
        max_ack_pending=1000,
        filter_subject=all_events(settings.subject_prefix),
    )


def attach(broker: NatsBroker, consumer: ProjectionConsumer, settings: Settings, batch_size: int = 20) -> Any:
    """Subscribe ``consumer`` to every event through a durable pull consumer."""

    async def handle(msg: NatsMessage) -> None:
        raw = msg.raw_message
        try:
            attempts = int(raw.metadata.num_delivered)
        except NotJSMessageError:  # only FastStream's in-memory test broker sends these
            attempts = 1
        handled = await consumer.on_message(raw.data, raw.subject, attempts)
        if handled.outcome is Outcome.RETRY:
            await msg.nack(delay=handled.delay)
        else:
            await msg.ack()

    subscriber = broker.subscriber(
        all_events(settings.subject_prefix),
        stream=JStream(name=settings.nats_stream, declare=False),
        durable=consumer.name,
        config=consumer_config(consumer, settings),
        pull_sub=PullSub(batch_size=batch_size, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
    )
    subscriber(handle)
    return subscriber
