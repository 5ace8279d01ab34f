"""API keys: random secrets shown once, stored only as sha256 hashes.

A key looks like ``cfd_<id>_<secret>``; the id lets operators list and revoke keys without ever
seeing the secret again. sha256 suffices because keys carry 256 bits of entropy (no dictionary
to guess from).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from detector.errors import AuthError, InvalidInputError
from detector.store import ApiKeyRecord, Store, validate_brand_slug
from detector.timestamps import utc_now

ROLES = ("admin", "brand", "pipeline")


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    brand: str | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(store: Store, *, role: str, brand: str | None = None) -> tuple[str, ApiKeyRecord]:
    if role not in ROLES:
        raise InvalidInputError(f"invalid role {role!r}; valid roles: {', '.join(ROLES)}")
    if role == "brand":
        if not brand:
            raise InvalidInputError("a brand key needs --brand")
        store.require_brand(validate_brand_slug(brand))
    elif brand:
        raise InvalidInputError(f"only brand keys are bound to a brand, not {role} keys")
    key_id = secrets.token_hex(6)
    key = f"cfd_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(key_id, hash_key(key), role, brand, utc_now(), None)
    store.add_api_key(record)
    return key, record


def authenticate(store: Store, key: str | None) -> Principal:
    if not key:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    record = store.find_api_key(hash_key(key))
    # the lookup is by hash, so the secret itself is never compared in Python
    if record is None or record.revoked_at is not None:
        raise AuthError("invalid or revoked API key")
    return Principal(record.id, record.role, record.brand)
