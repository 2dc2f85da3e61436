"""Idempotent declaration of the JetStream stream that carries Baton's events."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from runtime.bus.subjects import all_events

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0


def stream_config(name: str, subject_prefix: str, replicas: int = 1) -> StreamConfig:
    """The stream's configuration: file storage, limits retention, a dedup window."""
    return StreamConfig(
        name=name,
        subjects=[all_events(subject_prefix)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
        max_age=30 * 24 * 3600.0,
    )


async def ensure_stream(js: JetStreamContext, name: str, subject_prefix: str, replicas: int = 1) -> None:
    """Create the stream, or bring an existing one to the expected configuration."""
    config = stream_config(name, subject_prefix, replicas)
    try:
        await js.stream_info(name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("created JetStream stream %s", name)
            return
        except Exception:  # another process created it between our calls
            await js.stream_info(name)
    await js.update_stream(config)
