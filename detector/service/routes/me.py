from __future__ import annotations

from fastapi import APIRouter

from detector.service.auth import AnyKey
from detector.service.schemas import ErrorBody, Me

router = APIRouter(tags=["keys"])


@router.get("/v1/me", response_model=Me, responses={401: {"model": ErrorBody}})
def me(principal: AnyKey) -> dict:
    """Who this key is: its id, role and brand (the console signs in with it)."""
    return {"key_id": principal.key_id, "role": principal.role, "brand": principal.brand}
