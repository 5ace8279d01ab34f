"""What the console needs from the app: who a key is, thumbnails, brand statistics, several verdicts
in one queue query, its own page and assets, and an OpenAPI page that works offline with a bearer scheme."""

from __future__ import annotations

import io

from PIL import Image

from tests.service.helpers import auth, photo_files
from tests.synthetic import product_photo


def _refs(client, keys, brand):
    response = client.get(f"/v1/brands/{brand}/references", headers=auth(keys["admin"]))
    if not response.json()["references"]:
        client.post(f"/v1/brands/{brand}/references", headers=auth(keys["admin"]),
                    files=photo_files(*(product_photo(brand, i, size=600, fmt="JPEG") for i in range(3))))
        response = client.get(f"/v1/brands/{brand}/references", headers=auth(keys["admin"]))
    return response.json()["references"]


def test_me_names_the_key(service):
    client, keys = service
    assert client.get("/v1/me", headers=auth(keys["brand"])).json() == {
        "key_id": keys["brand"].split("_")[1], "role": "brand", "brand": "acme"}
    assert client.get("/v1/me").status_code == 401


def test_a_brand_key_lists_only_its_brand(service):
    client, keys = service
    assert [b["brand"] for b in client.get("/v1/brands", headers=auth(keys["brand"])).json()["brands"]] == ["acme"]
    assert {"acme", "zenit"} <= {b["brand"] for b in client.get("/v1/brands", headers=auth(keys["pipeline"])).json()["brands"]}


def test_thumbnails_are_small_cached_and_scoped(service):
    client, keys = service
    reference = _refs(client, keys, "acme")[0]
    url = f"/v1/brands/acme/references/{reference['id']}/thumbnail"
    response = client.get(url, headers=auth(keys["brand"]))
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(response.content)).size) <= 256
    again = client.get(url, headers={**auth(keys["brand"]), "If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert client.get(url, headers=auth(keys["other_brand"])).status_code == 403
    check = client.post("/v1/check", headers=auth(keys["pipeline"]), files=photo_files(product_photo("acme", 90, size=600, fmt="JPEG")),
                        data={"brand": "acme"}).json()
    thumb = client.get(f"/v1/checks/{check['check_id']}/photos/0/thumbnail", headers=auth(keys["pipeline"]))
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) == 256
    assert client.get(f"/v1/checks/{check['check_id']}/photos/3/thumbnail", headers=auth(keys["pipeline"])).status_code == 404


def test_brand_stats_and_the_queue_of_flagged_checks(service):
    client, keys = service
    _refs(client, keys, "acme")
    _refs(client, keys, "zenit")
    flagged = client.post("/v1/check", headers=auth(keys["pipeline"]), files=photo_files(product_photo("zenit", 91)),
                          data={"brand": "acme"}).json()
    genuine = client.post("/v1/check", headers=auth(keys["pipeline"]), files=photo_files(product_photo("acme", 92)),
                          data={"brand": "acme"}).json()
    assert flagged["verdict"] in ("suspicious", "counterfeit") and genuine["verdict"] == "genuine"
    queue = client.get("/v1/checks", headers=auth(keys["brand"]),
                       params={"verdict": "suspicious,counterfeit", "decision": "undecided"}).json()["checks"]
    ids = [c["id"] for c in queue]
    assert flagged["check_id"] in ids and genuine["check_id"] not in ids
    assert client.get("/v1/checks", headers=auth(keys["brand"]), params={"verdict": "suspicious,maybe"}).status_code == 422
    client.post(f"/v1/checks/{flagged['check_id']}/decision", headers=auth(keys["brand"]), json={"decision": "counterfeit"})
    stats = client.get("/v1/brands/acme/stats", headers=auth(keys["brand"])).json()
    today = stats["days"][-1]
    assert today["genuine"] >= 1 and today["suspicious"] + today["counterfeit"] >= 1
    assert stats["outcomes"][flagged["verdict"]]["counterfeit"] >= 1 and stats["calibration"]["scope"] in ("model", "brand")
    assert client.get("/v1/brands/acme/stats", headers=auth(keys["other_brand"])).status_code == 403
    assert client.get("/v1/brands/acme/stats", headers=auth(keys["pipeline"])).status_code == 403
    assert client.get("/v1/brands/acme/stats", headers=auth(keys["admin"]), params={"days": 0}).status_code == 422


def test_pages_and_assets_are_served_by_the_app(service):
    client, _ = service
    home = client.get("/")
    assert home.status_code == 200 and 'href="/console"' in home.text and 'href="/docs"' in home.text
    console = client.get("/console")
    assert console.status_code == 200 and "script-src 'self'" in console.headers["content-security-policy"]
    for asset, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        response = client.get(f"/console/{asset}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert client.get("/console/../settings.py").status_code == 404
    assert client.get("/console/nothing.js").status_code == 404
    docs = client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["api_key"] == {
        "type": "http", "scheme": "bearer", "description": "an API key from `cfd keys create`"}
    assert {"api_key": []} in schema["paths"]["/v1/check"]["post"]["security"]
