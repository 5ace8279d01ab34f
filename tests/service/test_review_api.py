"""The review queue over HTTP: stored checks, who sees them, decisions, genuine examples, per-brand
thresholds, confirmed photos as references, heatmaps, webhooks to a real loopback receiver, audit."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from detector.webhooks import DeliveryPolicy
from tests.alignment_scenes import listing_photo, studio_product
from tests.service.conftest import SMALL_LIMITS, ready_client
from tests.service.helpers import auth, make_keys, photo_files
from tests.synthetic import encode, product_photo


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("review") / "var"
    keys = make_keys(data_dir)
    client = ready_client(replace(SMALL_LIMITS, data_dir=data_dir,
                                  webhooks=DeliveryPolicy(max_attempts=4, retry_base_s=0.2, timeout_s=5, poll_s=0.05)))
    for brand in ("acme", "zenit"):
        response = client.post(f"/v1/brands/{brand}/references", headers=auth(keys["admin"]),
                               files=photo_files(*(product_photo(brand, i) for i in range(4))))
        assert response.status_code == 201
    yield client, keys
    client.__exit__(None, None, None)


def _check(client, key: str, brand: str, photo: bytes, **data) -> dict:
    response = client.post("/v1/check", headers=auth(key), files=photo_files(photo), data={"brand": brand, **data})
    assert response.status_code == 200, response.text
    return response.json()


def test_every_check_is_stored_and_listed_newest_first(review):
    client, keys = review
    made = [_check(client, keys["pipeline"], "acme", product_photo("acme", 300 + i), listing_id=f"L{i}")["check_id"]
            for i in range(3)]
    admin = auth(keys["admin"])
    pages, cursor = [], None
    while True:
        body = client.get("/v1/checks", headers=admin, params={"brand": "acme", "limit": 2,
                                                               **({"before": cursor} if cursor else {})}).json()
        pages.append([c["id"] for c in body["checks"]])
        cursor = body["next"]
        if cursor is None:
            break
    listed = [i for page in pages for i in page]
    assert listed == sorted(listed, reverse=True) and set(made) <= set(listed) and all(len(p) <= 2 for p in pages)
    one = client.get(f"/v1/checks/{made[1]}", headers=admin).json()
    assert one["listing_id"] == "L1" and one["result"]["check_id"] == made[1] and one["decisions"] == []
    assert client.get("/v1/checks", headers=admin, params={"since": "2999-01-01T00:00:00Z"}).json()["checks"] == []
    for bad in ({"verdict": "maybe"}, {"decision": "perhaps"}, {"since": "yesterday"}, {"limit": 0}, {"before": -1}):
        response = client.get("/v1/checks", headers=admin, params=bad)
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
    assert client.get("/v1/checks/999999", headers=admin).status_code == 404


def test_keys_see_only_their_checks(review):
    client, keys = review
    acme = _check(client, keys["brand"], "acme", product_photo("acme", 310))["check_id"]
    zenit = _check(client, keys["pipeline"], "zenit", product_photo("zenit", 311))["check_id"]
    brand_view = client.get("/v1/checks", headers=auth(keys["brand"])).json()["checks"]
    assert brand_view and {c["brand"] for c in brand_view} == {"acme"}
    assert client.get(f"/v1/checks/{zenit}", headers=auth(keys["brand"])).status_code == 404
    assert client.get("/v1/checks", headers=auth(keys["brand"]), params={"brand": "zenit"}).status_code == 403
    pipeline_view = client.get("/v1/checks", headers=auth(keys["pipeline"])).json()["checks"]
    assert zenit in [c["id"] for c in pipeline_view] and acme not in [c["id"] for c in pipeline_view]
    assert client.get(f"/v1/checks/{acme}/photos/0", headers=auth(keys["other_brand"])).status_code == 404
    photo = client.get(f"/v1/checks/{acme}/photos/0", headers=auth(keys["brand"]))
    assert photo.status_code == 200 and photo.content == product_photo("acme", 310) and photo.headers["content-type"] == "image/png"
    assert client.get("/v1/checks", headers=auth(keys["revoked"])).status_code == 401


def test_decisions_by_admin_or_the_brand_and_the_queue(review):
    client, keys = review
    check_id = _check(client, keys["pipeline"], "acme", product_photo("zenit", 320))["check_id"]
    url = f"/v1/checks/{check_id}/decision"
    assert client.post(url, headers=auth(keys["pipeline"]), json={"decision": "counterfeit"}).status_code == 403
    assert client.post(url, headers=auth(keys["other_brand"]), json={"decision": "counterfeit"}).status_code == 404
    for bad in ({"decision": "maybe"}, {"decision": "genuine", "kind": "logo"}, {"decision": "counterfeit", "kind": "Bad Kind"},
                {"decision": "genuine", "extra": 1}):
        response = client.post(url, headers=auth(keys["admin"]), json=bad)
        assert response.status_code == 422, bad
    queue = {c["id"] for c in client.get("/v1/checks", headers=auth(keys["brand"]), params={"decision": "undecided"}).json()["checks"]}
    assert check_id in queue
    first = client.post(url, headers=auth(keys["brand"]), json={"decision": "counterfeit", "kind": "lookalike", "note": "not ours"})
    assert first.status_code == 201 and first.json()["kind"] == "lookalike"
    second = client.post(url, headers=auth(keys["admin"]), json={"decision": "genuine"})
    assert second.status_code == 201
    record = client.get(f"/v1/checks/{check_id}", headers=auth(keys["admin"])).json()
    assert record["decision"] == "genuine" and [d["decision"] for d in record["decisions"]] == ["counterfeit", "genuine"]
    assert record["decisions"][0]["key_id"] == keys["brand"].split("_")[1]
    queue = {c["id"] for c in client.get("/v1/checks", headers=auth(keys["brand"]), params={"decision": "undecided"}).json()["checks"]}
    assert check_id not in queue  # a decided check leaves the queue


def test_a_confirmed_counterfeit_photo_flags_its_copies(review):
    client, keys = review
    shot = encode(listing_photo(studio_product(0), 7)[0], "JPEG", quality=92)
    first = _check(client, keys["pipeline"], "zenit", shot)
    client.post(f"/v1/checks/{first['check_id']}/decision", headers=auth(keys["admin"]), json={"decision": "counterfeit"})
    image = Image.open(io.BytesIO(shot))
    copy = io.BytesIO()
    image.resize((400, 400)).save(copy, format="JPEG", quality=85)
    again = _check(client, keys["pipeline"], "zenit", copy.getvalue())
    assert again["verdict"] == "counterfeit" and "known_counterfeit" in again["images"][0]["flags"]
    assert again["images"][0]["known_counterfeit"]["check_id"] == first["check_id"]


def test_a_confirmed_genuine_photo_becomes_a_reference_in_one_call(review):
    client, keys = review
    photo = product_photo("acme", 330)
    check_id = _check(client, keys["pipeline"], "acme", photo)["check_id"]
    url = f"/v1/checks/{check_id}/references"
    refused = client.post(url, headers=auth(keys["brand"]), json={})
    assert refused.status_code == 422 and "not confirmed genuine" in refused.json()["error"]["message"]
    client.post(f"/v1/checks/{check_id}/decision", headers=auth(keys["brand"]), json={"decision": "genuine"})
    assert client.post(url, headers=auth(keys["pipeline"]), json={}).status_code == 403  # pipeline keys change no references
    assert client.post(url, headers=auth(keys["other_brand"]), json={}).status_code == 404  # not its check to see
    added = client.post(url, headers=auth(keys["brand"]), json={"product": "bottle"})
    assert added.status_code == 201
    reference = added.json()["references"][0]
    assert reference["brand"] == "acme" and reference["sha256"] == hashlib.sha256(photo).hexdigest()
    rechecked = _check(client, keys["pipeline"], "acme", photo)
    assert rechecked["images"][0]["nearest_references"][0]["id"] == reference["id"]


def test_genuine_examples_refit_the_brands_thresholds(review):
    client, keys = review
    before = client.get("/v1/brands/zenit/calibration", headers=auth(keys["other_brand"])).json()
    assert before["scope"] == "model"
    examples = client.post("/v1/brands/zenit/examples", headers=auth(keys["other_brand"]),
                           files=photo_files(*(product_photo("zenit", 340 + i) for i in range(9))))
    assert examples.status_code == 201 and len(examples.json()["checks"]) == 9
    assert client.post("/v1/brands/zenit/examples", headers=auth(keys["brand"]),
                       files=photo_files(product_photo("zenit", 350))).status_code == 403
    assert client.post("/v1/brands/zenit/calibration", headers=auth(keys["other_brand"])).status_code == 403
    fitted = client.post("/v1/brands/zenit/calibration", headers=auth(keys["admin"]))
    assert fitted.status_code == 200, fitted.text
    body = fitted.json()
    assert body["calibration"]["scope"] == "brand" and body["calibration"]["source"] == "decisions"
    assert body["calibration"]["genuine_photos"] >= 9
    now = client.get("/v1/brands/zenit/calibration", headers=auth(keys["other_brand"])).json()
    assert now == body["calibration"]
    result = _check(client, keys["pipeline"], "zenit", product_photo("zenit", 351))
    assert result["calibration"] == body["calibration"]
    assert client.post("/v1/brands/nobody/calibration", headers=auth(keys["admin"])).status_code == 404


def test_heatmaps_of_stored_checks(review):
    client, keys = review
    aligned = _check(client, keys["pipeline"], "acme", encode(listing_photo(studio_product(0), 3)[0], "JPEG", quality=92))
    # acme's references are other products: the photo does not align, so it has no heatmap
    missing = client.get(f"/v1/checks/{aligned['check_id']}/photos/0/heatmap", headers=auth(keys["pipeline"]))
    assert aligned["images"][0]["alignment"]["aligned"] is False and missing.status_code == 404
    studio = encode(studio_product(0), "JPEG", quality=92)
    client.post("/v1/brands", headers=auth(keys["admin"]), json={"brand": "studio"})
    client.post("/v1/brands/studio/references", headers=auth(keys["admin"]), files=photo_files(studio))
    result = _check(client, keys["pipeline"], "studio", encode(listing_photo(studio_product(0), 4)[0], "JPEG", quality=92))
    assert result["images"][0]["alignment"]["aligned"]
    png = client.get(f"/v1/checks/{result['check_id']}/photos/0/heatmap", headers=auth(keys["pipeline"]))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (480, 480)


class _Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first ``failures`` requests, then 204; keeps what it got."""

    failures = 2
    received: list = []

    def do_POST(self):  # noqa: N802 (the standard library's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers, body))  # case-insensitive
        self.send_response(500 if len(type(self).received) <= type(self).failures else 204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_are_signed_retried_and_logged(review):
    client, keys = review
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        admin = auth(keys["admin"])
        hook = client.post("/v1/webhooks", headers=admin, json={
            "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook", "min_verdict": "suspicious", "brand": "acme"})
        assert hook.status_code == 201
        secret = hook.json()["secret"]
        assert "secret" not in client.get("/v1/webhooks", headers=admin).json()["webhooks"][0]
        for bad in ("file:///etc/passwd", "http://[::1", "http://", "not a url", "https://x/" + "a" * 2100):
            assert client.post("/v1/webhooks", headers=admin, json={"url": bad}).status_code == 422, bad
        assert client.post("/v1/webhooks", headers=auth(keys["brand"]), json={"url": "http://127.0.0.1:1/"}).status_code == 403

        genuine = _check(client, keys["pipeline"], "acme", product_photo("acme", 360))
        flagged = _check(client, keys["pipeline"], "acme", product_photo("zenit", 361))
        other_brand = _check(client, keys["pipeline"], "zenit", product_photo("acme", 362))
        assert genuine["verdict"] == "genuine" and flagged["verdict"] in ("suspicious", "counterfeit")
        assert other_brand["verdict"] in ("suspicious", "counterfeit")
        deadline = time.monotonic() + 30
        while len(_Receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # nothing more should come
        assert len(_Receiver.received) == 3  # one check, two failures then success; the others do not concern the hook
        for headers, body in _Receiver.received:
            expected = hmac.new(secret.encode(), headers["X-CFD-Timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-CFD-Signature"], f"sha256={expected}")
            assert abs(int(headers["X-CFD-Timestamp"]) - time.time()) < 60
            payload = json.loads(body)
            assert payload["check_id"] == flagged["check_id"] and payload["result"] == flagged
        log = client.get(f"/v1/webhooks/{hook.json()['id']}/deliveries", headers=admin).json()["deliveries"]
        assert len(log) == 1 and log[0]["state"] == "delivered" and log[0]["attempts"] == 3
        assert [a["status"] for a in log[0]["log"]] == [500, 500, 204]
        assert client.delete(f"/v1/webhooks/{hook.json()['id']}", headers=admin).status_code == 204
        assert client.get("/v1/webhooks", headers=admin).json()["webhooks"] == []
    finally:
        receiver.shutdown()


def test_every_write_is_in_the_audit_log(review):
    client, keys = review
    admin = auth(keys["admin"])
    client.post("/v1/brands", headers=admin, json={"brand": "audited"})
    reference = client.post("/v1/brands/audited/references", headers=admin, files=photo_files(product_photo("acme", 370))).json()
    client.delete(f"/v1/brands/audited/references/{reference['references'][0]['id']}", headers=admin)
    check_id = _check(client, keys["pipeline"], "acme", product_photo("acme", 371))["check_id"]
    client.post(f"/v1/checks/{check_id}/decision", headers=admin, json={"decision": "genuine", "note": "fine"})
    entries = client.get("/v1/audit", headers=admin, params={"limit": 500}).json()["entries"]
    actions = {(e["action"], e["target"]) for e in entries}
    admin_id = keys["admin"].split("_")[1]
    assert {("brand.create", "audited"), ("reference.add", "audited"), ("reference.delete", "audited"),
            ("decision.add", f"check/{check_id}"), ("key.create", admin_id), ("key.revoke", keys["revoked"].split("_")[1])} <= actions
    assert all(e["key_id"] == admin_id for e in entries if e["target"] == "audited")
    assert [e["key_id"] for e in entries if e["action"] == "key.create"] == ["local"] * 5  # made by cfd on the machine
    decisions = client.get("/v1/audit", headers=admin, params={"action": "decision.add"}).json()["entries"]
    assert decisions and {e["action"] for e in decisions} == {"decision.add"}
    prefixed = client.get("/v1/audit", headers=admin, params={"action": "reference."}).json()["entries"]
    assert {e["action"] for e in prefixed} == {"reference.add", "reference.delete"}
    assert client.get("/v1/audit", headers=auth(keys["brand"])).status_code == 403
    assert client.get("/v1/audit", headers=admin, params={"since": "not a time"}).status_code == 422


def test_brand_keys_see_checks_that_claim_their_brand_not_those_predicted_to_be(review):
    client, keys = review
    response = client.post("/v1/check", headers=auth(keys["pipeline"]), files=photo_files(product_photo("acme", 380)))
    unclaimed = response.json()
    assert unclaimed["brand"] == "acme" and any("no brand was claimed" in r for r in unclaimed["reasons"])
    record = client.get(f"/v1/checks/{unclaimed['check_id']}", headers=auth(keys["admin"])).json()
    assert record["claimed"] is False
    assert client.get(f"/v1/checks/{unclaimed['check_id']}", headers=auth(keys["brand"])).status_code == 404
    assert unclaimed["check_id"] not in [c["id"] for c in client.get("/v1/checks", headers=auth(keys["brand"])).json()["checks"]]
