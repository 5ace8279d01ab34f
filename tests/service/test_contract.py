"""HTTP API v1, endpoint by endpoint: status codes, shapes, error bodies."""

from __future__ import annotations

import base64
import hashlib

from tests.service.helpers import auth, photo_files
from tests.synthetic import product_photo


def _upload(client, key, brand, *seeds, source=None, product=None):
    photos = [product_photo(source or brand, s) for s in seeds]
    data = {"product": product} if product else None
    return client.post(f"/v1/brands/{brand}/references", headers=auth(key), files=photo_files(*photos), data=data)


def test_health_ready_metrics(service):
    client, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"]["name"] == "zero-shot-efficientnet-lite0"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "cfd_http_requests_total" in metrics.text
    assert "cfd_gallery_references" in metrics.text and "cfd_model_batch_size" in metrics.text


def test_brand_lifecycle(service):
    client, keys = service
    admin = auth(keys["admin"])
    created = client.post("/v1/brands", headers=admin, json={"brand": "lifecycle", "display_name": "Life Cycle"})
    assert created.status_code == 201
    assert created.json() == {"brand": "lifecycle", "display_name": "Life Cycle", "reference_count": 0}
    again = client.post("/v1/brands", headers=admin, json={"brand": "lifecycle", "display_name": "x"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    listed = client.get("/v1/brands", headers=admin).json()["brands"]
    assert {"brand": "lifecycle", "display_name": "Life Cycle", "reference_count": 0} in listed
    assert _upload(client, keys["admin"], "lifecycle", 1, source="orbit").status_code == 201
    assert client.delete("/v1/brands/lifecycle", headers=admin).status_code == 204
    assert "lifecycle" not in [b["brand"] for b in client.get("/v1/brands", headers=admin).json()["brands"]]
    gone = client.delete("/v1/brands/lifecycle", headers=admin)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_brand"


def test_references_upload_list_image_delete(service):
    client, keys = service
    admin = auth(keys["admin"])
    response = _upload(client, keys["admin"], "acme", 1, 2, 3, product="sneaker")
    assert response.status_code == 201
    refs = response.json()["references"]
    assert len(refs) == 3
    assert set(refs[0]) == {"id", "brand", "product", "sha256", "width", "height", "created_at", "duplicate"}
    assert all(r["brand"] == "acme" and r["product"] == "sneaker" and not r["duplicate"] for r in refs)
    assert refs[0]["sha256"] == hashlib.sha256(product_photo("acme", 1)).hexdigest()

    duplicate = _upload(client, keys["admin"], "acme", 1).json()["references"][0]
    assert duplicate["duplicate"] is True and duplicate["id"] == refs[0]["id"]

    page = client.get("/v1/brands/acme/references?limit=2", headers=admin).json()
    assert len(page["references"]) == 2 and page["next"] is not None
    rest = client.get(f"/v1/brands/acme/references?limit=2&after={page['next']}", headers=admin).json()
    ids = [r["id"] for r in page["references"] + rest["references"]]
    assert len(ids) == len(set(ids)) and set(r["id"] for r in refs) <= set(ids)

    image = client.get(f"/v1/brands/acme/references/{refs[1]['id']}/image", headers=admin)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == product_photo("acme", 2)

    assert client.delete(f"/v1/brands/acme/references/{refs[2]['id']}", headers=admin).status_code == 204
    missing = client.delete(f"/v1/brands/acme/references/{refs[2]['id']}", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/brands/acme/references/{refs[2]['id']}/image", headers=admin).status_code == 404


def _ensure_gallery(client, keys):
    for brand in ("acme", "zenit"):
        _upload(client, keys["admin"], brand, 10, 11, 12)


def test_check_result_shape_and_verdicts(service):
    client, keys = service
    _ensure_gallery(client, keys)
    headers = auth(keys["pipeline"])
    response = client.post("/v1/check", headers=headers, files=photo_files(product_photo("zenit", 77)),
                           data={"brand": "acme", "listing_id": "L-9"})
    assert response.status_code == 200
    result = response.json()
    assert set(result) == {"check_id", "listing_id", "brand", "verdict", "counterfeit_score", "model", "calibration", "images",
                           "reasons"}
    stored = client.get(f"/v1/checks/{result['check_id']}", headers=headers).json()
    assert stored["result"] == result and stored["key_id"] == keys["pipeline"].split("_")[1]
    assert result["listing_id"] == "L-9" and result["brand"] == "acme"
    assert result["model"] == {"name": "zero-shot-efficientnet-lite0", "version": "1.0.0"}
    image = result["images"][0]
    assert image["predicted_brand"] == "zenit" and "brand_mismatch" in image["flags"]
    assert result["verdict"] in ("suspicious", "counterfeit") and 0 <= result["counterfeit_score"] <= 1
    genuine = client.post("/v1/check", headers=headers, files=photo_files(product_photo("acme", 78)),
                          data={"brand": "acme"}).json()
    assert genuine["counterfeit_score"] < result["counterfeit_score"]
    assert genuine["images"][0]["nearest_references"][0]["brand"] == "acme"


def test_check_unknown_brand_and_no_claim(service):
    client, keys = service
    _ensure_gallery(client, keys)
    headers = auth(keys["pipeline"])
    unknown = client.post("/v1/check", headers=headers, files=photo_files(product_photo("zenit", 5)), data={"brand": "nobody"})
    assert unknown.status_code == 200 and unknown.json()["verdict"] == "unverifiable"
    assert unknown.json()["images"][0]["predicted_brand"] == "zenit"
    unclaimed = client.post("/v1/check", headers=headers, files=photo_files(product_photo("zenit", 6))).json()
    assert unclaimed["brand"] == "zenit" and unclaimed["verdict"] != "unverifiable"


def test_batch_check_mixes_results_and_errors(service):
    client, keys = service
    _ensure_gallery(client, keys)
    good = base64.b64encode(product_photo("acme", 40)).decode()
    body = {"listings": [
        {"listing_id": "ok", "brand": "acme", "images": [{"base64": good}]},
        {"listing_id": "bad", "brand": "acme", "images": [{"base64": base64.b64encode(b"junk").decode()}]},
        {"listing_id": "not-b64", "brand": "acme", "images": [{"base64": "***"}]},
    ]}
    response = client.post("/v1/check/batch", headers=auth(keys["pipeline"]), json=body)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["listing_id"] for r in results] == ["ok", "bad", "not-b64"]
    assert results[0]["verdict"] in ("genuine", "suspicious", "counterfeit")
    assert results[1]["error"]["code"] == "invalid_image" and results[2]["error"]["code"] == "invalid_image"


def test_openapi_documents_every_endpoint(service):
    client, _ = service
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/brands", "/v1/brands/{brand}", "/v1/brands/{brand}/references",
                 "/v1/brands/{brand}/references/{ref_id}", "/v1/brands/{brand}/references/{ref_id}/image",
                 "/v1/check", "/v1/check/batch", "/healthz", "/readyz", "/metrics"):
        assert path in paths, path
    assert "multipart/form-data" in paths["/v1/check"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    assert "examples" in str(spec["components"]["schemas"]["CheckResult"])


def test_every_response_has_a_request_id(service):
    client, _ = service
    response = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 16


def test_check_result_carries_each_photos_alignment(service):
    from tests.alignment_scenes import listing_photo, studio_product
    from tests.synthetic import encode

    client, keys = service
    admin = auth(keys["admin"])
    assert client.post("/v1/brands", headers=admin, json={"brand": "studio-scene"}).status_code == 201
    try:
        reference = encode(studio_product(), "JPEG", quality=92)
        assert client.post("/v1/brands/studio-scene/references", headers=admin, files=photo_files(reference)).status_code == 201
        photo, _ = listing_photo(studio_product(tampered=True), 4)
        response = client.post("/v1/check", headers=auth(keys["pipeline"]), data={"brand": "studio-scene"},
                               files=photo_files(encode(photo, "JPEG", quality=92)))
        assert response.status_code == 200
        alignment = response.json()["images"][0]["alignment"]
        assert alignment["aligned"] and alignment["inliers"] >= 8 and alignment["failure"] is None
        assert alignment["method"] == "keypoints" and 0.0 < alignment["correlation"] <= 1.0  # tampered: below a genuine photo
        assert len(alignment["heatmap"]) == 12 and all(0.0 <= v <= 1.0 for row in alignment["heatmap"] for v in row)
        x0, y0, x1, y1 = alignment["suspicious_box"]
        assert 0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height
        assert alignment["region"] and alignment["difference"] in ("colour", "structure")
    finally:
        client.delete("/v1/brands/studio-scene", headers=admin)


def test_a_service_without_alignment_answers_without_it(tmp_path):
    import argparse
    from dataclasses import replace

    from detector.service.settings import add_serve_arguments, settings_from_args
    from tests.service.conftest import SMALL_LIMITS, ready_client
    from tests.service.helpers import make_keys

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(tmp_path))
    parser.add_argument("--database", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--precision", default="auto")
    add_serve_arguments(parser)
    assert settings_from_args(parser.parse_args(["--no-alignment"])).alignment is False
    assert settings_from_args(parser.parse_args([])).alignment is True

    data_dir = tmp_path / "var"
    keys = make_keys(data_dir)
    client = ready_client(replace(SMALL_LIMITS, data_dir=data_dir, alignment=False))
    try:
        admin = auth(keys["admin"])
        client.post("/v1/brands", headers=admin, json={"brand": "acme"})
        client.post("/v1/brands/acme/references", headers=admin, files=photo_files(product_photo("acme", 1)))
        result = client.post("/v1/check", headers=auth(keys["pipeline"]), data={"brand": "acme"},
                             files=photo_files(product_photo("acme", 2))).json()
        assert result["images"][0]["alignment"] is None and result["verdict"] != "unverifiable"
    finally:
        client.__exit__(None, None, None)
