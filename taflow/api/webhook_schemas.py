"""Bodies and views of /v1/webhooks (the secret is shown once, in the answer to its creation)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from taflow.db.models import OutboxRow, WebhookDeliveryRow, WebhookSubscriptionRow
from taflow.db.webhooks import EVENT_PATTERN, event_id, secret_is_valid

EventPattern = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]

CREATE_EXAMPLE: dict[str, Any] = {
    "url": "https://partner.customs.gov.kh/taflow/events",
    "event_types": ["request.*"],
    "description": "GDCE case management system",
}
VIEW_EXAMPLE: dict[str, Any] = {
    "id": "wh_5f1c2a9e0b7d4c3a",
    "organisation": "KH",
    "url": "https://partner.customs.gov.kh/taflow/events",
    "event_types": ["request.*"],
    "description": "GDCE case management system",
    "created_by": "kh-coordinator",
    "created_at": "2026-03-02T08:15:00Z",
}


class WebhookCreateBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                CREATE_EXAMPLE,
                {
                    "url": "https://rocb.example.org/hooks/taflow",
                    "event_types": ["request.approved", "request.escalated", "invitation.sent"],
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                },
            ]
        },
    )

    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2000)] = Field(
        description="Where events are POSTed: https (loopback http only where the deployment allows it)"
    )
    event_types: Annotated[list[EventPattern], Field(min_length=1, max_length=50)] = Field(
        description="Event types to receive: exact (`request.approved`), a family (`request.*`) or `*`"
    )
    secret: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None,
        description="Standard Webhooks signing secret (`whsec_` + base64 of 24-64 bytes); "
        "generated when absent and shown once",
    )
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    organisation: Annotated[str, StringConstraints(min_length=2, max_length=16)] | None = Field(
        default=None,
        description="Admins only: the organisation the webhook belongs to (default: the caller's)",
    )

    @field_validator("event_types")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not EVENT_PATTERN.match(v)]
        if bad:
            raise ValueError(f"event types must look like `request.approved`, `request.*` or `*`: {bad[:3]}")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not secret_is_valid(value):
            raise ValueError("secret must be `whsec_` followed by base64 of 24 to 64 random bytes")
        return value


class WebhookView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [VIEW_EXAMPLE]})

    id: str
    organisation: str
    url: str
    event_types: list[str]
    description: str
    created_by: str
    created_at: datetime

    @classmethod
    def of_row(cls, row: WebhookSubscriptionRow) -> WebhookView:
        return cls(
            id=row.id,
            organisation=row.organisation_id,
            url=row.url,
            event_types=list(row.event_types),
            description=row.description,
            created_by=row.created_by,
            created_at=row.created_at,
        )


class WebhookCreatedView(WebhookView):
    """The new webhook with its signing secret: shown this once, never again."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [VIEW_EXAMPLE | {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]}
    )

    secret: str = Field(description="Verify deliveries with it (Standard Webhooks); store it now")


class WebhookList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [VIEW_EXAMPLE]}]})

    items: list[WebhookView]


DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": 1234,
    "webhook_id": "wh_5f1c2a9e0b7d4c3a",
    "event_id": "evt_981",
    "event_type": "request.approved",
    "request_id": "TA-2026-000042",
    "status": "dead",
    "attempts": 12,
    "last_status_code": 503,
    "last_error": "HTTP 503",
    "created_at": "2026-03-02T08:16:00Z",
    "updated_at": "2026-03-02T11:20:00Z",
}


class DeliveryView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [DELIVERY_EXAMPLE]})

    id: int
    webhook_id: str
    event_id: str = Field(description="The `webhook-id` header the receiver saw (same on every retry)")
    event_type: str
    request_id: str
    status: str = Field(description="pending, delivered, dead (retry budget spent) or cancelled")
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    dead_at: datetime | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of_rows(cls, delivery: WebhookDeliveryRow, event: OutboxRow) -> DeliveryView:
        return cls(
            id=delivery.id,
            webhook_id=delivery.subscription_id,
            event_id=event_id(event.id),
            event_type=event.event_type,
            request_id=event.request_id,
            status=delivery.status,
            attempts=delivery.attempts,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
            dead_at=delivery.dead_at,
            created_at=delivery.created_at,
            updated_at=delivery.updated_at,
        )


class DeliveryPageView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [DELIVERY_EXAMPLE], "next_cursor": None}]}
    )

    items: list[DeliveryView]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")
