"""/v1/webhooks: an organisation's endpoints for signed events, their deliveries, and redelivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Response

from taflow import authz
from taflow.api.auth import Caller, allow
from taflow.api.deps import SessionDep, SettingsDep
from taflow.api.idempotency import IDEMPOTENT, replayed_response
from taflow.api.problems import FieldError, ProblemError, problem_responses
from taflow.api.webhook_schemas import (
    DeliveryPageView,
    DeliveryView,
    WebhookCreateBody,
    WebhookCreatedView,
    WebhookList,
    WebhookView,
)
from taflow.authz import Action
from taflow.db import webhooks as db
from taflow.db.credentials import ensure_organisations
from taflow.db.models import WebhookSubscriptionRow
from taflow.domain.enums import ORGANISATION_IDS

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

WebhookId = Annotated[str, Path(max_length=40, examples=["wh_5f1c2a9e0b7d4c3a"])]
DeliveryId = Annotated[int, Path(ge=1, le=2**62, examples=[1234])]


def _invalid(field: str, msg: str) -> ProblemError:
    return ProblemError(
        "validation-error", msg, errors=[FieldError(loc=["body", field], msg=msg, type="value_error")]
    )


def _check_url(url: str, allow_http: bool) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("url", "not a URL") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise _invalid("url", "the URL must use https")
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        raise _invalid("url", "the URL needs a host")
    if parts.username or parts.password or parts.fragment:
        raise _invalid("url", "the URL may not carry credentials or a fragment")


async def _own_webhook(session: SessionDep, caller: Caller, webhook_id: str) -> WebhookSubscriptionRow:
    row = await db.get_subscription(session, webhook_id)
    if row is None or not authz.sees_organisation(caller.actor, caller.reach, row.organisation_id):
        raise ProblemError("not-found", f"no webhook {webhook_id}")
    return row


@router.post(
    "",
    status_code=201,
    summary="Register a webhook for the caller's organisation",
    description="Events about requests the organisation may see are POSTed to `url`, signed with the "
    "Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers). "
    "The secret is shown in this answer only. See docs/webhooks.md.\n\n" + authz.who(Action.create_webhook),
    response_model=WebhookCreatedView,
    responses=replayed_response(WebhookCreatedView, "the first answer again (its secret too)")
    | problem_responses(400, 401, 403, 409, 413, 415, 422),
    dependencies=[IDEMPOTENT],
)
async def create_webhook(
    body: WebhookCreateBody,
    caller: Annotated[Caller, Depends(allow(Action.create_webhook))],
    session: SessionDep,
    settings: SettingsDep,
) -> WebhookCreatedView:
    actor = caller.actor
    organisation = body.organisation or actor.organisation
    if organisation not in ORGANISATION_IDS:
        raise _invalid("organisation", f"unknown organisation {organisation}")
    if not authz.sees_organisation(actor, caller.reach, organisation):
        raise ProblemError("forbidden", "you may only register webhooks for your own organisation")
    _check_url(body.url, settings.webhook_allow_http)
    secret = body.secret or db.generate_secret()
    await ensure_organisations(session, [organisation])
    row = await db.create_subscription(
        session,
        organisation=organisation,
        url=body.url,
        event_types=body.event_types,
        secret=secret,
        description=body.description,
        created_by=actor.subject,
    )
    await session.commit()
    return WebhookCreatedView(**WebhookView.of_row(row).model_dump(), secret=secret)


@router.get(
    "",
    summary="The webhooks of the caller's organisation (admins and ops: of any)",
    description=authz.who(Action.list_webhooks),
    response_model=WebhookList,
    responses=problem_responses(401, 403, 422),
)
async def list_webhooks(
    caller: Annotated[Caller, Depends(allow(Action.list_webhooks))],
    session: SessionDep,
    organisation: Annotated[str | None, Query(min_length=2, max_length=16)] = None,
) -> WebhookList:
    if caller.reach is authz.Reach.any:
        rows = await db.list_subscriptions(session, organisation)
    else:
        if organisation is not None and organisation != caller.actor.organisation:
            raise ProblemError("forbidden", "you may only list your own organisation's webhooks")
        rows = await db.list_subscriptions(session, caller.actor.organisation)
    return WebhookList(items=[WebhookView.of_row(r) for r in rows])


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Delete a webhook (pending deliveries are cancelled)",
    description=authz.who(Action.delete_webhook),
    responses=problem_responses(401, 403, 404, 422),
    dependencies=[IDEMPOTENT],
)
async def delete_webhook(
    webhook_id: WebhookId,
    caller: Annotated[Caller, Depends(allow(Action.delete_webhook))],
    session: SessionDep,
) -> Response:
    await _own_webhook(session, caller, webhook_id)
    await db.delete_subscription(session, webhook_id, datetime.now(UTC))
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    summary="A webhook's deliveries, newest first (find dead letters with `status=dead`)",
    description=authz.who(Action.list_deliveries),
    response_model=DeliveryPageView,
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def list_deliveries(
    webhook_id: WebhookId,
    caller: Annotated[Caller, Depends(allow(Action.list_deliveries))],
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|dead|cancelled)$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> DeliveryPageView:
    await _own_webhook(session, caller, webhook_id)
    before = None
    if cursor is not None:
        if not cursor.isdigit() or not 0 < int(cursor) < 2**62:
            raise ProblemError("invalid-cursor", "cursor is not one this server issued")
        before = int(cursor)
    page = await db.list_deliveries(session, webhook_id, status=status, limit=limit, before=before)
    return DeliveryPageView(
        items=[DeliveryView.of_rows(d, o) for d, o in page.items],
        next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redelivery",
    status_code=202,
    summary="Send a dead (or delivered) delivery again, with a fresh retry budget",
    description="The event keeps its `webhook-id`, so a receiver that got it before can tell.\n\n"
    + authz.who(Action.redeliver),
    response_model=DeliveryView,
    responses=problem_responses(401, 403, 404, 409, 422),
    dependencies=[IDEMPOTENT],
)
async def redeliver(
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    caller: Annotated[Caller, Depends(allow(Action.redeliver))],
    session: SessionDep,
) -> DeliveryView:
    await _own_webhook(session, caller, webhook_id)
    found = await db.get_delivery(session, delivery_id)
    if found is None or found[0].subscription_id != webhook_id:
        raise ProblemError("not-found", f"no delivery {delivery_id} of webhook {webhook_id}")
    try:
        delivery = await db.redeliver(session, delivery_id, datetime.now(UTC))
    except db.NotRedeliverable as exc:
        raise ProblemError("conflict", str(exc)) from exc
    assert delivery is not None
    await session.commit()
    return DeliveryView.of_rows(delivery, found[2])
