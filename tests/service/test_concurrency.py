"""Parallel uploads and checks on a real server: no races, micro-batching, bounded queue."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.service.helpers import Server, auth, make_keys, photo_files
from tests.synthetic import product_photo


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("concurrency") / "var"
    keys = make_keys(data_dir)
    server = Server(data_dir, "--max-wait-ms", "30", "--max-batch", "32").start()
    yield server, keys
    server.stop()


def test_parallel_uploads_and_checks(server):
    server, keys = server
    admin = auth(keys["admin"])
    with httpx.Client(timeout=60) as client:
        for brand in ("acme", "zenit"):  # a gallery to check against
            client.post(f"{server.url}/v1/brands/{brand}/references", headers=admin,
                        files=photo_files(*[product_photo(brand, s) for s in range(3)])).raise_for_status()

    def upload(i: int):
        brand = ("acme", "zenit")[i % 2]
        with httpx.Client(timeout=120) as client:
            return brand, client.post(f"{server.url}/v1/brands/{brand}/references", headers=admin,
                                      files=photo_files(product_photo(brand, 100 + i)))

    def check(i: int):
        brand = ("acme", "zenit")[i % 2]
        with httpx.Client(timeout=120) as client:
            return brand, client.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]),
                                      files=photo_files(product_photo(brand, 500 + i)), data={"listing_id": f"L{i}"})

    with ThreadPoolExecutor(max_workers=12) as pool:
        uploads = [pool.submit(upload, i) for i in range(12)]
        checks = [pool.submit(check, i) for i in range(24)]
        upload_results = [f.result() for f in uploads]
        check_results = [f.result() for f in checks]

    assert all(r.status_code == 201 for _, r in upload_results)
    ids = [r.json()["references"][0]["id"] for _, r in upload_results]
    assert len(set(ids)) == 12
    for i, (brand, response) in enumerate(check_results):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["listing_id"] == f"L{i}"  # every answer went back to its own request
        assert result["brand"] == brand  # no claim: the predicted brand is the photo's brand
        assert result["images"][0]["predicted_brand"] == brand

    with httpx.Client(timeout=60) as client:
        brands = {b["brand"]: b["reference_count"] for b in client.get(f"{server.url}/v1/brands", headers=admin).json()["brands"]}
        assert brands == {"acme": 9, "zenit": 9}
        assert client.get(f"{server.url}/readyz").json()["references"] == 18
        metrics = client.get(f"{server.url}/metrics").text
    forward_passes = _metric(metrics, "cfd_model_batch_size_count")
    images = _metric(metrics, "cfd_model_batch_size_sum")
    assert images == 24  # every checked photo went through the batcher exactly once
    assert forward_passes < 24  # and concurrent checks shared forward passes
    assert 'cfd_http_requests_total{method="POST",route="/v1/check",status="200"} 24.0' in metrics


def test_full_queue_answers_503(tmp_path):
    data_dir = tmp_path / "var"
    keys = make_keys(data_dir)
    # the batcher holds a partly filled batch for 400 ms, so a queue of 4 images fills up at once
    server = Server(data_dir, "--max-queue", "4", "--max-wait-ms", "400", "--max-files", "2").start()
    try:
        def check(i: int):
            with httpx.Client(timeout=120) as client:
                return client.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]),
                                   files=photo_files(product_photo("acme", i), product_photo("acme", i + 1)))

        with ThreadPoolExecutor(max_workers=12) as pool:
            responses = list(pool.map(check, range(12)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) >= 1 and statuses.count(200) >= 2
        for r in responses:
            if r.status_code == 503:
                assert r.json()["error"]["code"] == "overloaded"
    finally:
        server.stop()
