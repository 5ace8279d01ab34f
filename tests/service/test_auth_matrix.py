"""Every role against every /v1 endpoint."""

from __future__ import annotations

import base64
import itertools

import pytest

from tests.service.helpers import auth, photo_files
from tests.synthetic import product_photo

ROLES = ("none", "invalid", "revoked", "admin", "brand", "other_brand", "pipeline")
_counter = itertools.count(1000)


def _key(keys, role):
    return {"none": None, "invalid": "cfd_nope_0000"}.get(role, keys.get(role))


def _new_reference(client, keys):
    seed = next(_counter)
    response = client.post("/v1/brands/acme/references", headers=auth(keys["admin"]),
                           files=photo_files(product_photo("acme", seed)))
    return response.json()["references"][0]["id"]


def _new_brand(client, keys):
    name = f"temp-{next(_counter)}"
    client.post("/v1/brands", headers=auth(keys["admin"]), json={"brand": name})
    return name


# endpoint -> (request builder, roles that succeed, success status)
def _requests():
    return {
        "list brands": (lambda c, k: ("GET", "/v1/brands", {}), {"admin", "brand", "other_brand", "pipeline"}, 200),
        "create brand": (lambda c, k: ("POST", "/v1/brands", {"json": {"brand": f"new-{next(_counter)}"}}), {"admin"}, 201),
        "delete brand": (lambda c, k: ("DELETE", f"/v1/brands/{_new_brand(c, k)}", {}), {"admin"}, 204),
        "upload references": (lambda c, k: ("POST", "/v1/brands/acme/references",
                                            {"files": photo_files(product_photo("acme", next(_counter)))}),
                              {"admin", "brand"}, 201),
        "list references": (lambda c, k: ("GET", "/v1/brands/acme/references", {}), {"admin", "brand", "pipeline"}, 200),
        "reference image": (lambda c, k: ("GET", f"/v1/brands/acme/references/{_new_reference(c, k)}/image", {}),
                            {"admin", "brand", "pipeline"}, 200),
        "delete reference": (lambda c, k: ("DELETE", f"/v1/brands/acme/references/{_new_reference(c, k)}", {}),
                             {"admin", "brand"}, 204),
        "check": (lambda c, k: ("POST", "/v1/check", {"files": photo_files(product_photo("acme", 1)), "data": {"brand": "acme"}}),
                  {"admin", "brand", "other_brand", "pipeline"}, 200),
        "batch check": (lambda c, k: ("POST", "/v1/check/batch", {"json": {"listings": [
            {"listing_id": "x", "brand": "acme", "images": [{"base64": base64.b64encode(product_photo("acme", 2)).decode()}]}]}}),
                        {"admin", "brand", "other_brand", "pipeline"}, 200),
    }


@pytest.mark.parametrize("endpoint", list(_requests()))
def test_role_matrix(service, endpoint):
    client, keys = service
    build, allowed, success = _requests()[endpoint]
    for role in ROLES:
        method, path, kwargs = build(client, keys)
        response = client.request(method, path, headers=auth(_key(keys, role)), **kwargs)
        if role in ("none", "invalid", "revoked"):
            expected = 401
        elif role in allowed:
            expected = success
        else:
            expected = 403
        assert response.status_code == expected, (endpoint, role, response.status_code, response.text)
        if expected >= 400:
            assert response.json()["error"]["code"] == ("unauthorized" if expected == 401 else "forbidden")
        if expected == 401:
            assert response.headers.get("www-authenticate") == "Bearer"


def test_brand_key_cannot_read_another_brands_gallery(service):
    client, keys = service
    response = client.get("/v1/brands/zenit/references", headers=auth(keys["brand"]))
    assert response.status_code == 403 and "bound to brand 'acme'" in response.json()["error"]["message"]


def test_malformed_authorization_headers(service):
    client, _ = service
    for header in (b"Bearer", b"Basic abc", b"bearer ", b"Token x", "Bearer \u00e9\u00e9".encode()):
        response = client.get("/v1/brands", headers={"Authorization": header})
        assert response.status_code == 401, header
