"""A model with a patch head behind a real server: patch evidence survives micro-batching."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.service.helpers import Server, auth, make_keys, photo_files
from tests.synthetic import product_photo


def test_concurrent_checks_with_a_patch_model(tmp_path, patch_model):
    data_dir = tmp_path / "var"
    keys = make_keys(data_dir)
    server = Server(data_dir, "--model", str(patch_model.path), "--max-wait-ms", "50").start()
    try:
        with httpx.Client(timeout=60) as client:
            for brand in ("acme", "zenit"):
                client.post(f"{server.url}/v1/brands/{brand}/references", headers=auth(keys["admin"]),
                            files=photo_files(*[product_photo(brand, s) for s in range(3)])).raise_for_status()

        def check(i: int) -> dict:
            brand = ("acme", "zenit")[i % 2]
            with httpx.Client(timeout=120) as client:
                response = client.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]), data={"brand": "acme"},
                                       files=photo_files(product_photo(brand, 50 + i)))
            response.raise_for_status()
            return {"claimed_by": brand, **response.json()}

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(check, range(8)))
    finally:
        server.stop()
    for result in results:
        assert result["model"] == {"name": "patchy", "version": "0.1.0"}
        # this calibration flags every photo with any patch anomaly: the signal reached every result
        assert "local_mismatch" in result["images"][0]["flags"]
        if result["claimed_by"] == "zenit":
            assert "brand_mismatch" in result["images"][0]["flags"]
