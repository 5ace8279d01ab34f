"""Admin-only resources: webhooks (with their delivery log) and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from detector import audit, webhooks
from detector.service.auth import AdminKey
from detector.service.schemas import AuditList, DeliveryList, ErrorBody, WebhookCreate, WebhookCreated, WebhookList
from detector.store import MAX_ID

router = APIRouter(tags=["admin"])
ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}


@router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated, responses=ERRORS)
def create_webhook(body: WebhookCreate, principal: AdminKey, request: Request) -> dict:
    """Register a URL that receives each stored check at or above ``min_verdict`` (optionally of one brand),
    signed with HMAC-SHA256: ``X-CFD-Signature: sha256=hex(hmac(secret, X-CFD-Timestamp + "." + body))``."""
    return webhooks.create(request.app.state.store, url=body.url, min_verdict=body.min_verdict, brand=body.brand,
                           actor=principal.key_id)


@router.get("/v1/webhooks", response_model=WebhookList, responses=ERRORS)
def list_webhooks(principal: AdminKey, request: Request) -> dict:
    return {"webhooks": webhooks.listed(request.app.state.store)}


@router.delete("/v1/webhooks/{hook_id}", status_code=204, responses=ERRORS)
def delete_webhook(hook_id: str, principal: AdminKey, request: Request) -> Response:
    webhooks.remove(request.app.state.store, hook_id, actor=principal.key_id)
    return Response(status_code=204)


@router.get("/v1/webhooks/{hook_id}/deliveries", response_model=DeliveryList, responses=ERRORS)
def webhook_deliveries(hook_id: str, principal: AdminKey, request: Request,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The delivery log, newest first: state, attempts, and each attempt's status or error."""
    return {"deliveries": webhooks.deliveries(request.app.state.store, hook_id, limit=limit)}


@router.get("/v1/audit", response_model=AuditList, responses=ERRORS)
def audit_log(principal: AdminKey, request: Request,
              action: Annotated[str | None, Query(max_length=64, description="e.g. decision.add, or a prefix: reference.")] = None,
              target: Annotated[str | None, Query(max_length=200)] = None,
              key_id: Annotated[str | None, Query(max_length=64)] = None,
              since: Annotated[str | None, Query(description="ISO 8601 time, inclusive")] = None,
              until: Annotated[str | None, Query(description="ISO 8601 time, exclusive")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="cursor: a previous page's 'next'")] = None,
              ) -> dict:
    """Every write, newest first, with who (the key id; 'local' for cfd commands on the machine) and when."""
    page, cursor = audit.entries(request.app.state.store, action=action, target=target, key_id=key_id, since=since,
                                 until=until, limit=limit, before=before)
    return {"entries": page, "next": cursor}
