"""A 201 (or a check's 200 with its check_id) survives kill -9: a real server, uploads and checks in
flight, SIGKILL, restart, compare."""

from __future__ import annotations

import hashlib
import threading
import time

import httpx

from tests.service.helpers import Server, auth, make_keys
from tests.synthetic import product_photo


def _all_references(url, key, brand):
    refs, after = [], None
    while True:
        params = {"limit": 100} | ({"after": after} if after else {})
        page = httpx.get(f"{url}/v1/brands/{brand}/references", headers=auth(key), params=params, timeout=30).json()
        refs += page["references"]
        if page["next"] is None:
            return refs
        after = page["next"]


def test_acknowledged_writes_survive_sigkill(tmp_path, engine_database):
    """On SQLite, and on PostgreSQL (the server killed is the service; the database server stays up)."""
    data_dir = tmp_path / "var"
    keys = make_keys(data_dir, database=engine_database)
    server = Server(data_dir, "--max-wait-ms", "2", *(["--database", engine_database] if engine_database else [])).start()
    acked: dict[int, str] = {}  # id -> sha256 of every upload answered 201
    deleted: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def uploader(worker: int) -> None:
        seed = worker * 1000
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                seed += 1
                data = product_photo("acme" if worker % 2 else "zenit", seed)
                try:
                    response = client.post(f"{server.url}/v1/brands/acme/references", headers=auth(keys["admin"]),
                                           files=[("files", (f"{seed}.png", data, "image/png"))])
                except httpx.HTTPError:
                    return  # the server died mid-request: that upload was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acked[response.json()["references"][0]["id"]] = hashlib.sha256(data).hexdigest()

    checks: dict[int, tuple[dict, str]] = {}  # check id -> (result, sha256 of its photo) of every check answered 200

    def checker(worker: int) -> None:
        seed = 50_000 + worker * 1000
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                seed += 1
                data = product_photo("zenit", seed)
                try:
                    response = client.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]),
                                           files=[("files", ("l.png", data, "image/png"))], data={"brand": "acme"})
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    with lock:
                        checks[response.json()["check_id"]] = (response.json(), hashlib.sha256(data).hexdigest())

    threads = [threading.Thread(target=uploader, args=(w,)) for w in range(4)] + \
        [threading.Thread(target=checker, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    # acknowledged deletes must survive too
    with lock:
        victims = sorted(acked)[:3]
    for ref_id in victims:
        assert httpx.delete(f"{server.url}/v1/brands/acme/references/{ref_id}", headers=auth(keys["admin"]), timeout=30).status_code == 204
        deleted.add(ref_id)
    time.sleep(0.3)  # uploads are in flight right now
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) >= 12 and checks

    server.start()
    try:
        stored = {r["id"]: r["sha256"] for r in _all_references(server.url, keys["admin"], "acme")}
        for ref_id, digest in acked.items():
            if ref_id in deleted:
                assert ref_id not in stored
            else:
                assert stored.get(ref_id) == digest, f"acknowledged upload {ref_id} was lost"
        # originals are intact and the index matches the database
        for ref_id in list(stored)[:5]:
            image = httpx.get(f"{server.url}/v1/brands/acme/references/{ref_id}/image", headers=auth(keys["admin"]), timeout=30)
            assert hashlib.sha256(image.content).hexdigest() == stored[ref_id]
        ready = httpx.get(f"{server.url}/readyz", timeout=30).json()
        assert ready["references"] == len(stored)
        brands = httpx.get(f"{server.url}/v1/brands", headers=auth(keys["admin"]), timeout=30).json()["brands"]
        assert {b["brand"]: b["reference_count"] for b in brands}["acme"] == len(stored)
        for check_id, (result, digest) in checks.items():
            record = httpx.get(f"{server.url}/v1/checks/{check_id}", headers=auth(keys["admin"]), timeout=30)
            assert record.status_code == 200 and record.json()["result"] == result, f"acknowledged check {check_id} was lost"
            photo = httpx.get(f"{server.url}/v1/checks/{check_id}/photos/0", headers=auth(keys["admin"]), timeout=30)
            assert hashlib.sha256(photo.content).hexdigest() == digest
    finally:
        server.stop()
