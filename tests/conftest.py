from __future__ import annotations

import json

import pytest
import torch

from detector.gallery import Gallery, UploadFile
from detector.model_folder import WEIGHTS_FILE, Calibration, ModelConfig, build_net, default_model_path, load_model, save_model_folder
from detector.pipeline import Detector
from tests.synthetic import product_photo

PATCH_DIM = 16


@pytest.fixture(scope="session")
def zero_shot():
    return load_model()


@pytest.fixture(scope="session")
def embedder(zero_shot):
    return zero_shot.embedder(batch_size=16)


@pytest.fixture
def database() -> str | None:
    """The store's database for the gallery fixtures: None, the data directory's SQLite file. A module
    overrides it with ``engine_database`` to run each of its tests on both engines."""
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_database(request) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def gallery(tmp_path, zero_shot, embedder, database):
    g = Gallery(tmp_path / "var", embedder=embedder, model_fingerprint=zero_shot.fingerprint, database=database).open()
    yield g
    g.close()


@pytest.fixture
def populated(gallery):
    """Two brands with four references each."""
    for brand in ("acme", "zenit"):
        gallery.create_brand(brand)
        gallery.add_references(brand, [UploadFile(f"{brand}{i}.png", product_photo(brand, i)) for i in range(4)])
    return gallery


@pytest.fixture
def detector(zero_shot, populated):
    return Detector(zero_shot, populated)


@pytest.fixture(scope="session")
def patch_model(tmp_path_factory, zero_shot):
    """A model folder with a (randomly initialised) patch head and a calibration that uses it."""
    base = json.loads((default_model_path() / "config.json").read_text())
    base.update(name="patchy", version="0.1.0", patch_dim=PATCH_DIM, weights=WEIGHTS_FILE)
    config = ModelConfig.from_dict(base, source="test")
    torch.manual_seed(0)
    net = build_net(config, pretrained=True)
    calibration = Calibration(features=("brand_similarity", "brand_margin", "patch_anomaly"), weights=(-5.0, -5.0, 8.0),
                              bias=1.0, suspicious_threshold=0.5, counterfeit_threshold=0.8,
                              default_other_similarity=0.7, high_patch_anomaly=0.0)
    folder = save_model_folder(tmp_path_factory.mktemp("models") / "patchy", config=config, calibration=calibration,
                               metrics={}, model_card="# patchy\n", net=net)
    return load_model(folder)


@pytest.fixture
def small_disk(tmp_path):
    """A real, tiny file system (tmpfs) for the data directory; needs root, as CI has."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture(scope="session")
def postgres_server():
    from tests.postgres_server import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh database on the session's throwaway PostgreSQL server."""
    return postgres_server.new_database()
