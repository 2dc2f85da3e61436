"""followup's webhook API: register a tenant's endpoint, see every delivery attempt.

An HTTP entry-point module: it only translates between HTTP and ``Notifier``
(``services/followup/notifications.py``), which does the work.
"""

from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, FastAPI, Path, Query
from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, TypeAdapter

from contracts.errors import RuleViolation
from runtime.web import tenant_dependency
from services.followup.notifications import STATUSES, Endpoint, Notifier

_url_adapter: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)


def _http_url(value: str) -> str:
    """An absolute http(s) URL, kept exactly as given (deliveries go to that URL)."""
    value = value.strip()
    _url_adapter.validate_python(value)  # raises: 'Input should be a valid URL' and friends
    return value


WebhookUrl = Annotated[
    str,
    Field(min_length=1, max_length=2048, description="Absolute http:// or https:// URL that receives the POSTs."),
    AfterValidator(_http_url),
]
DeliveryStatus = Literal["pending", "in_flight", "delivered", "failed", "no_endpoint"]
assert set(get_args(DeliveryStatus)) == set(STATUSES)

EXAMPLE_SECRET = "whsec_9f8e7d6c5b4a39281706"


class WebhookRegistration(BaseModel):
    """Where to POST this tenant's notifications, and the secret to sign them with."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": "https://crm.example.com/baton/webhooks", "secret": EXAMPLE_SECRET}]},
    )

    url: WebhookUrl
    secret: str = Field(
        min_length=16,
        max_length=256,
        description="Shared secret for the HMAC-SHA256 signature (at least 16 characters). "
        "Never returned by the API; responses show its fingerprint.",
    )


class WebhookEndpoint(BaseModel):
    """A tenant's registered endpoint (the secret itself is never shown)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme",
                    "url": "https://crm.example.com/baton/webhooks",
                    "secret_fingerprint": "da7447c3",
                    "updated_at": "2026-05-04T09:30:00.000000+00:00",
                }
            ]
        }
    )

    tenant_id: str
    url: str
    secret_fingerprint: str = Field(description="First 8 hex digits of the secret's SHA-256: tells secrets apart.")
    updated_at: str


class DeliveryAttempt(BaseModel):
    """One attempt to deliver a notification."""

    at: str = Field(description="When the attempt started (UTC).")
    status_code: int | None = Field(description="The endpoint's HTTP status; null when there was no answer.")
    error: str | None = Field(
        description="Why the attempt failed (timeout, connection error, HTTP status); null on 2xx."
    )
    duration_ms: int
    url: str | None = Field(default=None, description="The endpoint the attempt went to.")


class Delivery(BaseModel):
    """A notification and every attempt to deliver it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "notification_id": "escalation-esc-42",
                    "tenant_id": "acme",
                    "kind": "escalation.raised",
                    "status": "delivered",
                    "payload": {"escalation_id": "esc-42", "level": 1, "to_agent_id": "sup-7"},
                    "attempts": [
                        {
                            "at": "2026-05-04T09:30:00.120000+00:00",
                            "status_code": 500,
                            "error": "HTTP 500: upstream unavailable",
                            "duration_ms": 35,
                            "url": "https://crm.example.com/baton/webhooks",
                        },
                        {
                            "at": "2026-05-04T09:30:01.160000+00:00",
                            "status_code": 204,
                            "error": None,
                            "duration_ms": 21,
                            "url": "https://crm.example.com/baton/webhooks",
                        },
                    ],
                    "next_attempt_at": None,
                    "created_at": "2026-05-04T09:30:00.100000+00:00",
                    "delivered_at": "2026-05-04T09:30:01.181000+00:00",
                }
            ]
        }
    )

    notification_id: str = Field(description="Also sent as the Baton-Event-Id header: deduplicate by it.")
    tenant_id: str
    kind: str = Field(description="handoff.offered, promise.reminder, escalation.raised, handoff.failed, ...")
    status: DeliveryStatus
    payload: dict[str, Any] = Field(description="Sent as the body's `data`.")
    attempts: list[DeliveryAttempt]
    next_attempt_at: str | None = Field(description="When the next attempt is due; null once final.")
    created_at: str
    delivered_at: str | None = None
    finished_at: str | None = Field(default=None, description="When the status became final.")


class DeliveryList(BaseModel):
    """Deliveries, newest first."""

    tenant_id: str
    items: list[Delivery]


def _endpoint_json(tenant_id: str, endpoint: Endpoint) -> WebhookEndpoint:
    return WebhookEndpoint(
        tenant_id=tenant_id, url=endpoint.url, secret_fingerprint=endpoint.fingerprint, updated_at=endpoint.updated_at
    )


PROBLEM_422: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid request; `errors` names each field (problem details)."}
}


def add_webhook_routes(app: FastAPI, notifier: Notifier, default_tenant: str) -> None:
    """PUT/GET /v1/webhooks and GET /v1/webhooks/deliveries[/{notification_id}] on ``app``."""
    Tenant = Annotated[str, Depends(tenant_dependency(default_tenant))]

    @app.put(
        "/v1/webhooks",
        tags=["webhooks"],
        summary="Register (or replace) the tenant's webhook endpoint",
        response_model=WebhookEndpoint,
        responses=PROBLEM_422,
    )
    async def put_webhook(registration: WebhookRegistration, tenant: Tenant) -> WebhookEndpoint:
        """Offers, reminders and escalations of this tenant are POSTed to `url`, signed
        with `secret` (HMAC-SHA256 over `"{Baton-Timestamp}.{raw body}"`, sent as
        `Baton-Signature: v1=<hex>`). Replacing the endpoint applies to every later
        attempt, including retries of earlier notifications. Idempotent."""
        endpoint = await notifier.set_endpoint(tenant, registration.url, registration.secret)
        return _endpoint_json(tenant, endpoint)

    @app.get(
        "/v1/webhooks",
        tags=["webhooks"],
        summary="The tenant's webhook endpoint",
        response_model=WebhookEndpoint,
        responses={404: {"description": "No endpoint registered (problem `webhook_not_found`)."}},
    )
    async def get_webhook(tenant: Tenant) -> WebhookEndpoint:
        """The registered URL and the secret's fingerprint (never the secret)."""
        endpoint = await notifier.endpoint(tenant)
        if endpoint is None:
            raise RuleViolation(
                "not_found", "webhook_not_found", f"tenant {tenant} has no webhook endpoint; PUT /v1/webhooks first"
            )
        return _endpoint_json(tenant, endpoint)

    @app.get(
        "/v1/webhooks/deliveries",
        tags=["webhooks"],
        summary="Notifications and every delivery attempt, newest first",
        response_model=DeliveryList,
        responses=PROBLEM_422,
    )
    async def list_deliveries(
        tenant: Tenant,
        status: Annotated[DeliveryStatus | None, Query(description="Only deliveries with this status.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
    ) -> DeliveryList:
        """Each delivery with its status and every attempt (when, HTTP status or error,
        duration). `pending` ones wait for their next attempt (`next_attempt_at`),
        `in_flight` ones are being POSTed now; `delivered`, `failed` (attempts exhausted)
        and `no_endpoint` (none registered when it was due) are final."""
        docs = await notifier.deliveries(tenant, status=status, limit=limit)
        return DeliveryList(tenant_id=tenant, items=[Delivery.model_validate(d) for d in docs])

    @app.get(
        "/v1/webhooks/deliveries/{notification_id:path}",
        tags=["webhooks"],
        summary="One notification and every delivery attempt",
        response_model=Delivery,
        responses={404: {"description": "Unknown notification (problem `delivery_not_found`)."}},
    )
    async def get_delivery(
        notification_id: Annotated[
            str, Path(min_length=1, max_length=256, description="The Baton-Event-Id (may contain '/').")
        ],
        tenant: Tenant,
    ) -> Delivery:
        """The delivery record of one notification id (the `Baton-Event-Id` header)."""
        doc = await notifier.delivery(tenant, notification_id)
        if doc is None:
            raise RuleViolation(
                "not_found", "delivery_not_found", f"tenant {tenant} has no notification {notification_id}"
            )
        return Delivery.model_validate(doc)
