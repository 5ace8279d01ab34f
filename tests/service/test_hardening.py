"""Regressions of the hardening issue, each against a real `cfd serve` on loopback where a server is involved."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time

import httpx
import pytest

from detector.blobs import BlobStore
from detector.datalock import DataDirLock
from detector.alignment.recipe import DEFAULT_RECIPE
from detector.alignment.store import FEATURES_DIR, FeatureStore
from detector.gallery import IMAGES_DIR, remove_orphans
from detector.store import DB_FILE, Store
from tests.service.helpers import CFD, Server, auth, make_keys, photo_files
from tests.synthetic import product_photo

ORPHAN_SWEEPER = """
import sys, time
from pathlib import Path
from detector.blobs import BlobStore
from detector.datalock import DataDirLock
from detector.alignment.recipe import DEFAULT_RECIPE
from detector.alignment.store import FEATURES_DIR, FeatureStore
from detector.gallery import IMAGES_DIR, remove_orphans
from detector.store import DB_FILE, Store
data = Path(sys.argv[1])
store, blobs, lock = Store(data / DB_FILE), BlobStore(data / IMAGES_DIR), DataDirLock(data)
features = FeatureStore(data / FEATURES_DIR, DEFAULT_RECIPE)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    remove_orphans(store, blobs, lock, features)
    time.sleep(0.02)
"""


def test_orphan_cleanup_in_another_process_never_deletes_an_acknowledged_original(tmp_path):
    """Item 1: before, 316 of 576 acknowledged originals were lost with the clean-up running every 0.1 s."""
    import sys

    data_dir = tmp_path / "var"
    keys = make_keys(data_dir)
    server = Server(data_dir).start()
    acked: dict[int, str] = {}
    try:
        sweeper = subprocess.Popen([sys.executable, "-c", ORPHAN_SWEEPER, str(data_dir), "12"])
        deadline = time.monotonic() + 10
        seed = 0
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                photos = [product_photo("acme", seed + i) for i in range(4)]
                seed += 4
                response = client.post(f"{server.url}/v1/brands/acme/references", headers=auth(keys["admin"]),
                                       files=photo_files(*photos))
                assert response.status_code == 201, response.text
                for reference, data in zip(response.json()["references"], photos):
                    acked[reference["id"]] = hashlib.sha256(data).hexdigest()
        sweeper.wait(timeout=60)
    finally:
        server.stop()
    blobs = BlobStore(data_dir / IMAGES_DIR)
    assert len(acked) >= 20
    missing = [rid for rid, digest in acked.items() if not blobs.exists(digest)]
    assert missing == []


def test_a_running_server_sees_cli_changes_and_keeps_a_true_index(tmp_path):
    """Item 2: references added or removed by `cfd` count in the running server's checks at once,
    and its shutdown never saves a stale index over the truth."""
    data_dir = tmp_path / "var"
    keys = make_keys(data_dir, brands=("acme", "zenit", "orbit"))
    photos = tmp_path / "photos"
    for brand in ("acme", "zenit"):
        (photos / brand).mkdir(parents=True)
        for i in range(3):
            (photos / brand / f"{i}.png").write_bytes(product_photo(brand, i))
    server = Server(data_dir).start()
    cli = lambda *args: subprocess.run([CFD, *args, "--data-dir", str(data_dir), "-q"], capture_output=True,  # noqa: E731
                                       text=True, timeout=300)
    try:
        for brand in ("acme", "zenit"):
            assert cli("references", "add", brand, str(photos / brand)).returncode == 0
        check = lambda: httpx.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]), data={"brand": "acme"},  # noqa: E731
                                   files=photo_files(product_photo("acme", 99)), timeout=60).json()
        first = check()
        assert first["verdict"] != "unverifiable", first
        nearest = first["images"][0]["nearest_references"][0]["id"]
        assert cli("references", "remove", "acme", str(nearest)).returncode == 0
        assert nearest not in [n["id"] for n in check()["images"][0]["nearest_references"]]
    finally:
        server.stop()
    restarted = Server(data_dir).start()
    try:
        ids = {r["id"] for r in httpx.get(f"{restarted.url}/v1/brands/acme/references", headers=auth(keys["admin"])).json()["references"]}
        result = httpx.post(f"{restarted.url}/v1/check", headers=auth(keys["pipeline"]), data={"brand": "acme"},
                            files=photo_files(product_photo("acme", 99)), timeout=60).json()
        assert {n["id"] for n in result["images"][0]["nearest_references"]} <= ids and len(ids) == 2
    finally:
        restarted.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("hardening") / "var"
    keys = make_keys(data_dir)
    server = Server(data_dir, "--header-timeout", "1", "--body-timeout", "2", "--max-connections", "40",
                    "--max-file-bytes", "300000", "--max-batch-bytes", "1000000").start()
    yield server, keys
    server.stop()


def test_a_chunked_body_over_the_limit_is_413(live):
    """Item 5: a body without Content-Length over the limit ended in 500."""
    server, keys = live

    def body():  # one endless file part: more than 16 files of 300 kB and 1 MB of framing
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        for _ in range((16 * 300000 + 2 * 1024 * 1024) // 65536):
            yield b"x" * 65536

    for path, content_type in (("/v1/check", "multipart/form-data; boundary=b"), ("/v1/check/batch", "application/json"),
                               ("/v1/brands/acme/references", "multipart/form-data; boundary=b")):
        response = httpx.post(f"{server.url}{path}", headers={**auth(keys["admin"]), "Content-Type": content_type},
                              content=body(), timeout=60)
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large", (path, response.text)


def test_ids_and_cursors_beyond_sqlite_integers_are_422(live):
    """Item 5: ids or cursors >= 2**63 raised OverflowError (500)."""
    server, keys = live
    headers = auth(keys["admin"])
    for url in (f"/v1/brands/acme/references/{2**63}/image", f"/v1/brands/acme/references?after={2**63}",
                f"/v1/brands/acme/references/{2**64}/image", "/v1/brands/acme/references?after=-1"):
        response = httpx.get(f"{server.url}{url}", headers=headers)
        assert response.status_code == 422, (url, response.text)
    response = httpx.delete(f"{server.url}/v1/brands/acme/references/{2**63}", headers=headers)
    assert response.status_code == 422


def test_slow_clients_are_cut_off_and_the_service_stays_up(live):
    """Item 8: slowloris connections were held for 60 s; now headers have a deadline and connections a cap."""
    server, _ = live
    sockets = []
    for _ in range(60):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        sockets.append(s)
    time.sleep(2.5)
    closed = 0
    for s in sockets:
        s.settimeout(2)
        try:
            closed += s.recv(1024) == b""
        except (ConnectionResetError, socket.timeout):
            closed += 1  # a reset is closed too; a timeout would mean still held
        finally:
            s.close()
    assert closed == len(sockets)
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_a_stalled_body_gets_408(live):
    server, keys = live
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keys["admin"].encode() +
                  b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n")
        s.settimeout(10)
        answer = b""
        while b"request_timeout" not in answer and (chunk := s.recv(4096)):  # the body may come in a later segment
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer


def test_deleting_a_brand_revokes_its_keys(live):
    """Item 6: a brand key outlived its brand and worked again when the brand was created again."""
    server, keys = live
    admin = auth(keys["admin"])
    assert httpx.post(f"{server.url}/v1/brands", headers=admin, json={"brand": "short-lived"}).status_code == 201
    store = Store(server.data_dir / DB_FILE)
    from detector.keys import create_key

    brand_key, _ = create_key(store, role="brand", brand="short-lived")
    store.close()
    upload = lambda: httpx.post(f"{server.url}/v1/brands/short-lived/references", headers=auth(brand_key),  # noqa: E731
                                files=photo_files(product_photo("acme", 5)), timeout=60)
    assert upload().status_code == 201
    assert httpx.delete(f"{server.url}/v1/brands/short-lived", headers=admin).status_code == 204
    assert httpx.post(f"{server.url}/v1/brands", headers=admin, json={"brand": "short-lived"}).status_code == 201
    assert upload().status_code == 401


def test_small_input_problems_are_refused(live):
    """Item 9: a long or control-character listing_id, and an SVG part with JPEG bytes, were accepted."""
    server, keys = live
    headers = auth(keys["pipeline"])
    photo = product_photo("acme", 1)
    for listing_id in ("x" * 201, "a\x00b", "line\nbreak"):
        response = httpx.post(f"{server.url}/v1/check", headers=headers, data={"listing_id": listing_id},
                              files=photo_files(photo), timeout=60)
        assert response.status_code == 422 and "listing_id" in response.json()["error"]["message"], listing_id
    response = httpx.post(f"{server.url}/v1/check", headers=headers, files=photo_files(photo, content_type="image/svg+xml"))
    assert response.status_code == 415


def test_a_rejected_upload_leaves_no_file_behind(live):
    """Item 9: originals of a rejected upload stayed on disk until restart."""
    server, keys = live
    before = BlobStore(server.data_dir / IMAGES_DIR).digests()
    response = httpx.post(f"{server.url}/v1/brands/acme/references", headers=auth(keys["admin"]),
                          data={"product": "p" * 300}, files=photo_files(product_photo("acme", 777)), timeout=60)
    assert response.status_code == 422
    assert BlobStore(server.data_dir / IMAGES_DIR).digests() == before


def test_temporary_files_of_a_killed_writer_are_removed(tmp_path):
    blobs = BlobStore(tmp_path / IMAGES_DIR)
    (tmp_path / IMAGES_DIR / "ab").mkdir()
    leftover = tmp_path / IMAGES_DIR / "ab" / ".abcdef.tmp"
    leftover.write_bytes(b"half written")
    store = Store(tmp_path / DB_FILE)
    remove_orphans(store, blobs, DataDirLock(tmp_path), FeatureStore(tmp_path / FEATURES_DIR, DEFAULT_RECIPE))
    store.close()
    assert not leftover.exists()


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A server with small image budgets and a queue of 16 images."""
    data_dir = tmp_path_factory.mktemp("tight") / "var"
    keys = make_keys(data_dir)
    server = Server(data_dir, "--max-queue", "16", "--max-pixels", "1000000", "--max-request-pixels", "2000000",
                    "--max-decoding-pixels", "1000000").start()
    yield server, keys
    server.stop()


def _flat_png(side: int) -> bytes:
    from PIL import Image

    from tests.synthetic import encode

    return encode(Image.new("RGB", (side, side), (200, 40, 40)))


def test_a_full_batch_always_fits_through_admission(tight):
    """Item 4: the largest batch could never pass a queue smaller than its images."""
    import base64

    server, keys = tight
    encoded = base64.b64encode(product_photo("acme", 3, size=64)).decode()
    listings = [{"listing_id": f"L{i}", "images": [{"base64": encoded}] * 16} for i in range(4)]  # 64 images, queue 16
    response = httpx.post(f"{server.url}/v1/check/batch", headers=auth(keys["pipeline"]), json={"listings": listings}, timeout=120)
    assert [r.get("error") for r in response.json()["results"]] == [None] * 4


def test_a_request_over_its_pixel_budget_is_413_before_decoding(tight):
    """Item 3: each request has a decoded-pixel budget, read from the headers; a batch shares one."""
    import base64

    server, keys = tight
    big = _flat_png(1000)  # one megapixel, a few kB
    check = lambda *photos: httpx.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]),  # noqa: E731
                                       files=photo_files(*photos), timeout=120)
    assert check(big, big).status_code == 200
    response = check(big, big, big)
    assert response.status_code == 413 and "budget" in response.json()["error"]["message"]
    upload = httpx.post(f"{server.url}/v1/brands/acme/references", headers=auth(keys["admin"]),
                        files=photo_files(big, big, big), timeout=120)
    assert upload.status_code == 413
    listing = {"images": [{"base64": base64.b64encode(big).decode()}]}
    results = httpx.post(f"{server.url}/v1/check/batch", headers=auth(keys["pipeline"]), timeout=120,
                         json={"listings": [listing] * 3}).json()["results"]
    assert sorted(r.get("error", {}).get("code", "ok") for r in results) == ["ok", "ok", "too_large"]


def test_admission_refuses_before_reading_the_body_when_full(tmp_path):
    """Item 4: overload was detected only after decoding. Every slot is taken here by hand."""
    from fastapi.testclient import TestClient

    from detector.service.app import create_app
    from detector.service.settings import Settings

    data_dir = tmp_path / "var"
    keys = make_keys(data_dir)
    with TestClient(create_app(Settings(data_dir=data_dir, max_queue=16)), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        client.app.state.admission.in_flight = 16
        # a malformed body would be a 422 if it were read: the 503 shows it never was
        response = client.post("/v1/check", headers={**auth(keys["pipeline"]), "Content-Type": "multipart/form-data; boundary=x"},
                               content=b"not a multipart body")
        assert response.status_code == 503 and response.json()["error"]["code"] == "overloaded"
        client.app.state.admission.in_flight = 0


def test_a_full_disk_answers_507_and_the_service_keeps_serving(small_disk):
    """Item 7: a full disk gave a generic 500."""
    import numpy as np
    from fastapi.testclient import TestClient
    from PIL import Image

    from detector.service.app import create_app
    from detector.service.settings import Settings
    from tests.synthetic import encode

    data_dir = small_disk / "var"
    keys = make_keys(data_dir)
    noise = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)))
    with TestClient(create_app(Settings(data_dir=data_dir)), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        response = client.post("/v1/brands/acme/references", headers=auth(keys["admin"]), files=photo_files(noise))
        assert response.status_code == 507 and response.json()["error"]["code"] == "insufficient_storage", response.text
        ok = client.post("/v1/brands/acme/references", headers=auth(keys["admin"]), files=photo_files(product_photo("acme", 1)))
        assert ok.status_code == 201
        assert client.get("/v1/brands", headers=auth(keys["admin"])).json()["brands"][0]["reference_count"] == 1
