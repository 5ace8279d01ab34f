"""Bearer-key authentication and role checks, as ``Annotated`` dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from detector.errors import AuthError, ForbiddenError
from detector.keys import Principal, authenticate

DEV_PRINCIPAL = Principal("dev", "admin", None)


# Declares the scheme in the OpenAPI document (Swagger's "Authorize"); the header is checked below,
# so that a missing or malformed one gets this API's own 401.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="api_key", description="an API key from `cfd keys create`")


def current_principal(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> Principal:
    state = request.app.state
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and state.settings.dev_no_auth:
        return DEV_PRINCIPAL
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    return authenticate(state.store, token.strip())


AnyKey = Annotated[Principal, Depends(current_principal)]


def require_admin(principal: AnyKey) -> Principal:
    if principal.role != "admin":
        raise ForbiddenError(f"this needs an admin key; yours is a {principal.role} key")
    return principal


AdminKey = Annotated[Principal, Depends(require_admin)]


def require_brand_access(principal: Principal, brand: str, *, write: bool) -> None:
    """Admins touch every brand; brand keys only their own; pipeline keys only read."""
    if principal.role == "admin":
        return
    if principal.role == "brand":
        if principal.brand != brand:
            raise ForbiddenError(f"this key is bound to brand {principal.brand!r}, not {brand!r}")
        return
    if write:
        raise ForbiddenError("pipeline keys can run checks and read, not change references")
