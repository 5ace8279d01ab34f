"""Two ``cfd serve`` replicas on one PostgreSQL database and one shared data directory: what one
acknowledges, the other's next check uses; what one deletes, the other's next check never answers."""

from __future__ import annotations

import threading
import time

import httpx

from tests.service.helpers import Server, auth, make_keys
from tests.synthetic import product_photo


def _upload(client: httpx.Client, server: Server, key: str, brand: str, data: bytes) -> int:
    response = client.post(f"{server.url}/v1/brands/{brand}/references", headers=auth(key),
                           files=[("files", ("r.png", data, "image/png"))])
    assert response.status_code == 201, response.text
    return response.json()["references"][0]["id"]


def _nearest(client: httpx.Client, server: Server, key: str, brand: str, data: bytes) -> list[dict]:
    response = client.post(f"{server.url}/v1/check", headers=auth(key), data={"brand": brand},
                           files=[("files", ("l.png", data, "image/png"))])
    assert response.status_code == 200, response.text
    return response.json()["images"][0]["nearest_references"]


def test_replicas_use_each_others_changes_at_their_next_check(tmp_path, postgres_url):
    data_dir = tmp_path / "var"
    keys = make_keys(data_dir, database=postgres_url)
    # a follow interval longer than the test: only a check, or a notification, can bring a copy up to date
    options = ("--database", postgres_url, "--no-alignment", "--max-wait-ms", "2", "--follow-interval", "600")
    replicas = [Server(data_dir, *options), Server(data_dir, *options)]
    starting = [threading.Thread(target=r.start) for r in replicas]
    for t in starting:
        t.start()
    for t in starting:
        t.join()
    a, b = replicas
    stop = threading.Event()
    failures: list[str] = []
    background_ids: list[int] = []

    def traffic(server: Server, brand: str, offset: int) -> None:
        """Uploads and checks on one replica while the probes run."""
        seed = offset
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                seed += 1
                try:
                    background_ids.append(_upload(client, server, keys["admin"], brand, product_photo(brand, seed)))
                    _nearest(client, server, keys["pipeline"], brand, product_photo(brand, seed + 500))
                except AssertionError as exc:
                    failures.append(str(exc))

    threads = [threading.Thread(target=traffic, args=(a, "zenit", 1000)), threading.Thread(target=traffic, args=(b, "zenit", 2000))]
    for t in threads:
        t.start()
    try:
        with httpx.Client(timeout=60) as client:
            for probe in range(6):
                writer, reader = (a, b) if probe % 2 == 0 else (b, a)
                photo = product_photo("acme", 100 + probe)
                ref_id = _upload(client, writer, keys["admin"], "acme", photo)
                seen = _nearest(client, reader, keys["pipeline"], "acme", photo)
                assert seen[0]["id"] == ref_id and seen[0]["similarity"] > 0.99, (probe, seen)
                assert client.delete(f"{reader.url}/v1/brands/acme/references/{ref_id}", headers=auth(keys["admin"])).status_code == 204
                assert ref_id not in [r["id"] for r in _nearest(client, writer, keys["pipeline"], "acme", photo)], probe
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert failures == [] and len(background_ids) >= 4

        # idle, each copy follows the other replica's changes when PostgreSQL notifies it
        with httpx.Client(timeout=60) as client:
            listed = client.get(f"{a.url}/v1/brands", headers=auth(keys["admin"])).json()["brands"]
            total = sum(brand["reference_count"] for brand in listed)
            assert total == len(background_ids)
            late = _upload(client, a, keys["admin"], "acme", product_photo("acme", 900))
            assert client.delete(f"{b.url}/v1/brands/acme/references/{late}", headers=auth(keys["admin"])).status_code == 204
            sizes, deadline = [], time.monotonic() + 10
            while time.monotonic() < deadline and sizes != [total, total]:
                sizes = [client.get(f"{r.url}/readyz").json()["references"] for r in replicas]
                time.sleep(0.05)
            assert sizes == [total, total]
    finally:
        stop.set()
        for r in replicas:
            r.stop()
