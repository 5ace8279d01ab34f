"""Bad input gets a clear error, never a 500, and changes nothing."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from PIL import Image

from tests.service.helpers import auth, photo_files
from tests.synthetic import encode, product_image, product_photo


def _state(client, keys):
    """What a rejected request must not change: reference counts and the originals on disk."""
    brands = client.get("/v1/brands", headers=auth(keys["admin"])).json()["brands"]
    images = sorted(p.name for p in (client.app.state.settings.data_dir / "images").rglob("*") if p.is_file())
    return {b["brand"]: b["reference_count"] for b in brands}, images


def _noise_png(side: int) -> bytes:
    array = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(array), "PNG")


TRUNCATED = encode(product_image("acme", 3), "JPEG")[:900]
BOMB = encode(Image.new("L", (5000, 5000), 0), "PNG")  # 25 MP from a few kB; over the 4 MP test limit

UPLOAD_CASES = [
    ("truncated", photo_files(TRUNCATED, content_type="image/jpeg"), 400, "invalid_image"),
    ("not an image", photo_files(b"hello, I am text"), 400, "invalid_image"),
    ("one bad file of three", photo_files(product_photo("acme", 500), product_photo("acme", 501), b"junk"), 400, "invalid_image"),
    ("decompression bomb", photo_files(BOMB), 413, "too_large"),
    ("file over the byte limit", photo_files(_noise_png(400)), 413, "too_large"),
    ("part says text/plain", photo_files(product_photo("acme", 502), content_type="text/plain"), 415, "unsupported_media_type"),
    ("no files", [("product", (None, "x"))], 422, "validation_error"),
    ("files as a text field", [("files", (None, "not a file"))], 422, "validation_error"),
    ("unknown field", photo_files(product_photo("acme", 503)) + [("colour", (None, "red"))], 422, "validation_error"),
    ("65 files", photo_files(*[product_photo("acme", 600 + i) for i in range(65)]), 422, "validation_error"),
]


@pytest.mark.parametrize("name,files,status,code", UPLOAD_CASES, ids=[c[0] for c in UPLOAD_CASES])
def test_bad_uploads_store_nothing(service, name, files, status, code):
    client, keys = service
    before = _state(client, keys)
    response = client.post("/v1/brands/acme/references", headers=auth(keys["admin"]), files=files)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    assert _state(client, keys) == before


def test_wrong_request_content_types(service):
    client, keys = service
    admin = auth(keys["admin"])
    json_upload = client.post("/v1/brands/acme/references", headers=admin, json={"files": []})
    assert json_upload.status_code == 415 and json_upload.json()["error"]["code"] == "unsupported_media_type"
    multipart_batch = client.post("/v1/check/batch", headers=admin, files=photo_files(product_photo("acme", 1)))
    assert multipart_batch.status_code == 415
    text_check = client.post("/v1/check", headers={**admin, "Content-Type": "text/plain"}, content=b"hello")
    assert text_check.status_code == 415


@pytest.mark.parametrize("body", [b"garbage with no boundary", b"--xyz\r\nContent-Disposition: form-data\r\n\r\nunterminated",
                                  b"--xyz--\r\n", b"\x00" * 1000])
def test_malformed_multipart(service, body):
    client, keys = service
    before = _state(client, keys)
    response = client.post("/v1/brands/acme/references", content=body,
                           headers={**auth(keys["admin"]), "Content-Type": "multipart/form-data; boundary=xyz"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] in ("validation_error", "invalid_image")
    assert _state(client, keys) == before


def test_body_over_the_request_limit_is_refused_early(service):
    client, keys = service
    settings = client.app.state.settings
    too_big = settings.max_form_bytes + 1
    response = client.post("/v1/check", headers={**auth(keys["admin"]), "Content-Type": "multipart/form-data; boundary=x",
                                                 "Content-Length": str(too_big)}, content=b"x")
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


def test_check_limits_and_brand_rules(service):
    client, keys = service
    headers = auth(keys["pipeline"])
    seventeen = client.post("/v1/check", headers=headers, files=photo_files(*[product_photo("acme", i) for i in range(17)]))
    assert seventeen.status_code == 422 and "16" in seventeen.json()["error"]["message"]
    bad_slug = client.post("/v1/check", headers=headers, files=photo_files(product_photo("acme", 1)), data={"brand": "Not Valid"})
    assert bad_slug.status_code == 422
    fake = client.post("/v1/check", headers=headers, files=photo_files(b"GIF89a fake"))
    assert fake.status_code == 400 and fake.json()["error"]["code"] == "invalid_image"


def test_path_and_query_validation(service):
    client, keys = service
    admin = auth(keys["admin"])
    cases = [
        ("GET", "/v1/brands/acme/references?limit=0", 422),
        ("GET", "/v1/brands/acme/references?limit=abc", 422),
        ("GET", "/v1/brands/acme/references/not-a-number/image", 422),
        ("GET", "/v1/brands/acme/references/99999/image", 404),
        ("GET", "/v1/brands/NOPE/references", 422),
        ("GET", "/v1/brands/nobody/references", 404),
        ("POST", "/v1/brands/nobody/references", 404),
        ("DELETE", "/v1/brands/nobody", 404),
        ("GET", "/v1/nothing-here", 404),
        ("PUT", "/v1/brands", 405),
    ]
    for method, path, status in cases:
        response = client.request(method, path, headers=admin, files=photo_files(product_photo("acme", 1)) if method == "POST" else None)
        assert response.status_code == status, (method, path, response.text)
        assert "error" in response.json()


@pytest.mark.parametrize("body", [{"brand": "Bad Slug"}, {"brand": ""}, {"display_name": "x"}, {"brand": "ok-1", "extra": 1},
                                  {"brand": "x" * 65}, [], "string"])
def test_brand_create_validation(service, body):
    client, keys = service
    response = client.post("/v1/brands", headers=auth(keys["admin"]), json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


def test_batch_validation(service):
    client, keys = service
    headers = auth(keys["pipeline"])
    good = {"listing_id": "a", "brand": "acme", "images": [{"base64": base64.b64encode(product_photo("acme", 1)).decode()}]}
    for body in (b"{not json", b'{"listings": []}',
                 ('{"listings": [' + ",".join([__import__("json").dumps(good)] * 65) + "]}").encode()):
        response = client.post("/v1/check/batch", headers={**headers, "Content-Type": "application/json"}, content=body)
        assert response.status_code == 422, (body[:40], response.text)
        assert response.json()["error"]["code"] == "validation_error"


def test_an_empty_listing_gets_its_own_error_and_the_others_still_run(service):
    client, keys = service
    good = {"listing_id": "a", "brand": "acme", "images": [{"base64": base64.b64encode(product_photo("acme", 1)).decode()}]}
    response = client.post("/v1/check/batch", headers=auth(keys["pipeline"]),
                           json={"listings": [{"listing_id": "empty", "images": []}, good]})
    assert response.status_code == 200, response.text
    empty, checked = response.json()["results"]
    assert empty == {"listing_id": "empty", "error": {"code": "validation_error", "message": "a check needs at least one photo"}}
    assert checked["listing_id"] == "a" and "verdict" in checked and "error" not in checked


def test_the_generated_format_corpus_never_causes_a_500(service):
    """Every format Pillow writes, whole and broken, through the real app: an answer or a typed error."""
    from tests.image_corpus import corpus

    client, keys = service
    for name, data, decodable in corpus():
        response = client.post("/v1/check", headers=auth(keys["pipeline"]), files=photo_files(data))
        assert response.status_code in (200, 400, 413), (name, response.status_code, response.text)
        if decodable is not None:
            assert (response.status_code == 200) == decodable, (name, response.text)
