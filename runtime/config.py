"""Configuration: one pydantic-settings class, read once at start-up (never at import).

Every field is an environment variable with the ``BATON_`` prefix, e.g.
``BATON_STORE_URL``. The README's configuration table lists them all.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the three services (each reads the ones it needs)."""

    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore")

    data_dir: Path = Field(default=Path(".data"), description="Folder for the embedded store and local NATS data.")
    store_url: str = Field(
        default="",
        description="Event store: 'sqlite:///path/to/file.db' or a 'mongodb://' URI. "
        "Empty: SQLite at <data_dir>/baton.db.",
    )
    mongodb_database: str = Field(default="baton", description="Database name when the store is MongoDB.")
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server(s), comma-separated.")
    nats_stream: str = Field(default="BATON_EVENTS", description="JetStream stream that carries events.")
    nats_stream_replicas: int = Field(
        default=1, description="Replicas of the JetStream stream (3 on a production cluster)."
    )
    subject_prefix: str = Field(default="baton.events", description="Subjects are <prefix>.<tenant>.<event type>.")
    host: str = Field(default="127.0.0.1", description="Interface the HTTP API binds to.")
    intake_port: int = Field(default=8000, description="intake's HTTP port.")
    routing_port: int = Field(default=8001, description="routing's HTTP port.")
    followup_port: int = Field(default=8002, description="followup's HTTP port.")
    default_tenant: str = Field(
        default="default", description="Tenant used when a request sends no X-Tenant-ID header."
    )
    relay_interval_seconds: float = Field(
        default=0.5, description="How often the outbox relay looks for unpublished events."
    )
    consumer_max_attempts: int = Field(default=5, description="Deliveries of a failing message before it is parked.")
    consumer_retry_base_seconds: float = Field(
        default=0.5, description="First retry delay; doubles per attempt (capped at 60 s)."
    )
    consumer_ack_wait_seconds: float = Field(
        default=30.0,
        description="JetStream ack wait before an unacknowledged message is redelivered.",
    )
    command_retries: int = Field(
        default=5,
        description="Internal retries of a command that lost an optimistic-concurrency race.",
    )
    offer_ttl_seconds: float = Field(
        default=300.0, description="How long a hand-off offer waits for an answer before it expires."
    )
    timer_interval_seconds: float = Field(
        default=0.2, description="How often durable deadlines (offer expiry, promises) are checked."
    )
    policy_file: str = Field(
        default="",
        description="TOML file with per-tenant policies (promise horizon, reminder lead, escalation delays); "
        "empty: the defaults below for every tenant.",
    )
    promise_max_horizon: str = Field(
        default="P30D", description="Default: how far ahead a promise may be due (ISO 8601 duration)."
    )
    reminder_lead: str = Field(
        default="PT10M", description="Default: how long before a promise is due its owner is reminded (ISO 8601)."
    )
    escalation_level2_after: str = Field(
        default="PT30M",
        description="Default: an unacknowledged level-1 escalation climbs to level 2 after this (ISO 8601).",
    )
    webhook_max_attempts: int = Field(default=8, description="Delivery attempts of one webhook notification.")
    webhook_retry_base_seconds: float = Field(
        default=1.0, description="First webhook retry delay; doubles per attempt (capped at 5 minutes)."
    )
    webhook_timeout_seconds: float = Field(default=5.0, description="Timeout of one webhook delivery attempt.")
    trace_file: str = Field(
        default="",
        description="Write finished spans as JSON lines to this file ('{service}' is replaced by the service "
        "name); for tests and debugging. OTLP export uses the standard OTEL_* variables.",
    )
    log_level: str = Field(default="INFO", description="Log level.")
    fault: str = Field(
        default="",
        description="Test-only fault switch: 'exit_after_append' makes intake exit between "
        "an append and its publish. Never set it in production.",
    )

    def resolved_store_url(self) -> str:
        """The store URL, defaulting to the embedded SQLite file under ``data_dir``."""
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'baton.db').resolve()}"
