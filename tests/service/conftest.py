from __future__ import annotations

import time
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from detector.service.app import create_app
from detector.limits import Limits
from detector.service.settings import Settings
from tests.service.helpers import make_keys

SMALL_LIMITS = Settings(limits=Limits(max_file_bytes=300_000, max_pixels=4_000_000))


def ready_client(settings: Settings) -> TestClient:
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.__enter__()
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("app not ready")
        time.sleep(0.1)
    return client


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One in-process app (the real ASGI app and lifespan) with keys for every role."""
    data_dir = tmp_path_factory.mktemp("service") / "var"
    keys = make_keys(data_dir)
    client = ready_client(replace(SMALL_LIMITS, data_dir=data_dir))
    yield client, keys
    client.__exit__(None, None, None)
